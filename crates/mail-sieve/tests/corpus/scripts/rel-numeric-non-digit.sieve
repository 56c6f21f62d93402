require ["relational","fileinto","comparator-i;ascii-numeric"];
if header :value "gt" :comparator "i;ascii-numeric" "subject" "1000000" { fileinto "inf"; }
