require ["relational","date","fileinto"];
if date :originalzone :value "ge" "date" "date" "2024-03-15" { fileinto "hit"; }
