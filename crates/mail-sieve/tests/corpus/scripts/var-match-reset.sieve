require ["variables","fileinto"];
if header :matches "subject" "*" { set "s" "${1}"; }
if header :matches "from" "nomatch-*" { fileinto "never"; }
fileinto "s-${1}";
