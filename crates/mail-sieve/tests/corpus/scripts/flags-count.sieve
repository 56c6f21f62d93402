require ["imap4flags","relational","fileinto","comparator-i;ascii-numeric"];
setflag ["a", "b", "c"];
if hasflag :count "ge" :comparator "i;ascii-numeric" "3" { fileinto "three"; }
