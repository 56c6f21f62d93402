require ["fileinto"];
if header :contains "x-spam-flag" "YES" { fileinto "Junk"; }
