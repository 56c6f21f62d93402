require ["fileinto","variables"];
if address :all :matches "from" "*" { fileinto "from-${1}"; }
