require ["variables","fileinto"];
if address :all :matches "from" "*@*" { fileinto "${2}/${1}"; }
