require ["body","fileinto"];
if body :content "application/pdf" :contains "PDF" { fileinto "pdf"; }
