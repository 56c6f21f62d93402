require ["variables","fileinto"];
set "x" "abc";
if string :is "${x}" "abc" { fileinto "yes"; }
if string :contains ["${x}", "zzz"] "zz" { fileinto "yes2"; }
