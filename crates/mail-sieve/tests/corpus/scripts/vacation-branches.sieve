require ["vacation", "fileinto"];
if header :contains "subject" "lunch" { vacation "at lunch"; } elsif exists "list-id" { fileinto "lists"; } else { vacation :days 2 "away"; }
