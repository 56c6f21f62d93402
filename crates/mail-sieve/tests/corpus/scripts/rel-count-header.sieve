require ["relational","fileinto","comparator-i;ascii-numeric"];
if header :count "eq" :comparator "i;ascii-numeric" "x-tag" "3" { fileinto "three-tags"; }
if header :count "eq" :comparator "i;ascii-numeric" "received" "0" { fileinto "no-received"; }
