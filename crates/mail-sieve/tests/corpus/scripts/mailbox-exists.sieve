require ["fileinto","mailbox"];
if mailboxexists "Existing" { fileinto "Existing"; } else { fileinto :create "Missing"; }
