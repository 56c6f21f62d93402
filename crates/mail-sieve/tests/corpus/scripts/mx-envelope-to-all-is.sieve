require ["envelope","subaddress","fileinto"];
if envelope :all :is "to" "bob@example.org" { fileinto "hit"; }
