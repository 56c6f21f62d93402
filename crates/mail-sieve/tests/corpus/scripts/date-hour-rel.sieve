require ["date","relational","fileinto"];
if date :zone "+0100" :value "ge" "date" "hour" "18" { fileinto "evening"; }
