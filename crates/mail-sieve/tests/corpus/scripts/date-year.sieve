require ["date","fileinto"];
if date :is "date" "year" "2024" { fileinto "y2024"; }
