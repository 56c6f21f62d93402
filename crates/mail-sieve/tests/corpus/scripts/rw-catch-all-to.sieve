require ["fileinto","variables"];
if address :localpart :matches ["to","cc"] "*" { fileinto "to-${1}"; }
