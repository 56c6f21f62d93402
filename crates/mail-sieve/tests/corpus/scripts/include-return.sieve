require ["include","fileinto"];
include "returner";
fileinto "after-return";
