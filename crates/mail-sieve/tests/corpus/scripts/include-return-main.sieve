require ["include","fileinto"];
fileinto "x";
return;
fileinto "y";
