require ["subaddress","fileinto"];
if address :detail "to" "shopping" { fileinto "Shopping"; }
elsif address :user :contains "to" "bob" { fileinto "bob-user"; }
