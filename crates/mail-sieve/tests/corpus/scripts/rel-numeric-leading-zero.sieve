require ["relational","fileinto","comparator-i;ascii-numeric"];
if header :value "eq" :comparator "i;ascii-numeric" "x-build" "7" { fileinto "build7"; }
