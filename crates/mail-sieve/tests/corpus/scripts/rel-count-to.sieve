require ["relational","fileinto","comparator-i;ascii-numeric"];
if address :count "ge" :comparator "i;ascii-numeric" ["to","cc"] "3" { fileinto "many-recipients"; }
