require ["envelope","subaddress","fileinto"];
if envelope :user :is "to" "bob" { fileinto "hit"; }
