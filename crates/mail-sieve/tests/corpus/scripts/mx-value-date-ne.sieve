require ["relational","date","fileinto"];
if date :originalzone :value "ne" "date" "date" "2024-03-15" { fileinto "hit"; }
