require ["relational","fileinto","comparator-i;ascii-numeric"];
if header :value "le" :comparator "i;ascii-numeric" "x-warning-count" "7" { fileinto "le7"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-warning-count" "8" { fileinto "ge8"; }
