require ["relational","fileinto","comparator-i;ascii-numeric"];
if header :count "le" :comparator "i;ascii-numeric" "received" "1" { fileinto "hit"; }
