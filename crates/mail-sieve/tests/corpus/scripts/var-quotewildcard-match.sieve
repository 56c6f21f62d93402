require ["variables", "fileinto"];
if header :matches "subject" "*" { set :quotewildcard "s" "${1}"; }
if header :matches "subject" "${s}" { fileinto "self-match"; }
