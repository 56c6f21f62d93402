require ["include","fileinto"];
include "stopper";
fileinto "never";
