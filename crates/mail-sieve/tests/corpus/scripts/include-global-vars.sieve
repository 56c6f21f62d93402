require ["include","variables","fileinto"];
global "dest";
set "dest" "from-main";
include "use-global";
