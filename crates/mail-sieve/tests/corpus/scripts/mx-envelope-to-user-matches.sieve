require ["envelope","subaddress","fileinto"];
if envelope :user :matches "to" "*b*" { fileinto "hit"; }
