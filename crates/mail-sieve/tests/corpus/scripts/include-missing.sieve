require ["include","fileinto"];
fileinto "before";
include "does-not-exist";
