require ["body","fileinto"];
if body :text :contains "lunch" { fileinto "lunch"; }
