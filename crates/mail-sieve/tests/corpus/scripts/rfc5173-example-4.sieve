require ["body", "fileinto"];
if body :text :contains "project schedule" { fileinto "project/schedule"; }
