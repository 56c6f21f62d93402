require ["include", "variables", "fileinto"];
set "global.dest" "via-namespace";
include "use-global";
