require ["relational","date","fileinto"];
if date :originalzone :value "gt" "date" "date" "2024-03-15" { fileinto "hit"; }
