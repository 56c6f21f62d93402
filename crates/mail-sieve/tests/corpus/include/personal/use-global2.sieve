require ["include","variables","fileinto"];
global "test_mailbox";
fileinto "${test_mailbox}";
