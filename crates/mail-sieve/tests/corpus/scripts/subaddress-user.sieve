require ["envelope","subaddress","fileinto"];
if envelope :user "to" "bob" { fileinto "for-bob"; }
