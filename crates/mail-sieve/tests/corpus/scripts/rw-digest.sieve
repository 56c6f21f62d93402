require ["fileinto","date","relational"];
if allof (exists "list-id", date :originalzone :value "lt" "date" "hour" "07") { fileinto "Early-Lists"; }
