require ["body","fileinto"];
if body :content "text" :contains "Amount due" { fileinto "amount"; }
