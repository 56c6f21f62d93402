require ["envelope","subaddress","fileinto"];
if envelope :domain :matches "to" "*b*" { fileinto "hit"; }
