require ["envelope","subaddress","fileinto"];
if envelope :all :matches "to" "*b*" { fileinto "hit"; }
