require ["envelope","subaddress","fileinto"];
if envelope :domain :is "to" "example.org" { fileinto "hit"; }
