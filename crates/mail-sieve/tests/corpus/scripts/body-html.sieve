require ["body","fileinto"];
if body :text :contains "arrivals are here" { fileinto "html-text"; }
