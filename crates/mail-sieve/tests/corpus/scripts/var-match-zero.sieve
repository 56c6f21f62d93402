require ["variables", "fileinto"];
if header :matches "from" "*@*" { fileinto "z-${0}"; }
