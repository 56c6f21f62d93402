require ["reject","fileinto"];
if header :contains "subject" "Lunch" { fileinto "x"; reject "no"; }
