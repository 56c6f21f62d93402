require ["include", "variables", "fileinto"];
global ["test", "test_mailbox"];
set "test" "$$";
set "test_mailbox" "spam-${test}";
include "use-global2";
