require ["envelope","subaddress","fileinto"];
if envelope :detail :is "to" "debian" { fileinto "hit"; }
