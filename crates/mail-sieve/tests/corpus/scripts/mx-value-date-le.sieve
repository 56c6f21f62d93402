require ["relational","date","fileinto"];
if date :originalzone :value "le" "date" "date" "2024-03-15" { fileinto "hit"; }
