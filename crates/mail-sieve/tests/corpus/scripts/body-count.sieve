require ["body", "relational", "comparator-i;ascii-numeric", "fileinto"];
if body :content "text" :count "ge" :comparator "i;ascii-numeric" "1" { fileinto "has-text-part"; }
