require ["envelope","fileinto"];
if envelope :all :is "to" "bob@example.org" { fileinto "plain"; } else { fileinto "other"; }
