require ["include","fileinto"];
fileinto "n1";
include "nest2";
