require ["envelope","subaddress","fileinto"];
if envelope :detail :matches "to" "*b*" { fileinto "hit"; }
