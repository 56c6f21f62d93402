require ["body","fileinto"];
if body :text :contains "réunion" { fileinto "reunion"; }
