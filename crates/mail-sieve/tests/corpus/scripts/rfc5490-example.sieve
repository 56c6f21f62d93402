require ["fileinto", "mailbox"];
if mailboxexists "Existing" { fileinto "Existing"; }
if not mailboxexists "Trash2" { fileinto :create "Trash2"; }
