require ["include","fileinto"];
fileinto "n2";
include :global "spam";
