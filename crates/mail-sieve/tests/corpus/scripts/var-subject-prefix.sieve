require ["variables","fileinto"];
if header :matches "Subject" "[*] *" { fileinto "tag-${1}"; }
