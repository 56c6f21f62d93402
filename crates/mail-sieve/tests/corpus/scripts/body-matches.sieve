require ["body","fileinto"];
if body :matches "*prize*" { fileinto "prize"; }
