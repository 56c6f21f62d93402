require ["include","fileinto"];
fileinto "stopped";
stop;
