require ["envelope","subaddress","fileinto"];
if envelope :localpart :is "to" "bob+github" { fileinto "hit"; }
