require ["fileinto"];
if allof (not address :is "to" "bob@example.org", address :is "cc" "bob@example.org") { fileinto "CC"; }
