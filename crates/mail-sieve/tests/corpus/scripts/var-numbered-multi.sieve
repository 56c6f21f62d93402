require ["variables","fileinto"];
if header :matches "date" "*, * * * *" { fileinto "${3}-${2}"; }
