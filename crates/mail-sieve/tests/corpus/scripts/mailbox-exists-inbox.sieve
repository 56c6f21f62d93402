require ["mailbox","fileinto"];
if mailboxexists ["INBOX", "Existing"] { fileinto "both"; }
if mailboxexists ["INBOX", "Nope"] { fileinto "never"; }
