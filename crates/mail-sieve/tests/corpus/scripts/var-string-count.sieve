require ["variables","relational","fileinto","comparator-i;ascii-numeric"];
set "a" "x"; set "b" "";
if string :count "eq" :comparator "i;ascii-numeric" ["${a}", "${b}", "y"] "2" { fileinto "two"; }
