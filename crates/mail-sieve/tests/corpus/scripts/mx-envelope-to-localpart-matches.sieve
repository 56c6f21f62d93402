require ["envelope","subaddress","fileinto"];
if envelope :localpart :matches "to" "*b*" { fileinto "hit"; }
