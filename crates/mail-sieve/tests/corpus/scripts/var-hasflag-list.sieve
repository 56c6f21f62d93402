require ["imap4flags", "variables", "fileinto"];
set "a" "x y";
set "b" "z";
if hasflag :is ["a", "b"] "z" { fileinto "z-found"; }
if hasflag :count "eq" ["a", "b"] "3" { fileinto "never-casemap-count"; }
