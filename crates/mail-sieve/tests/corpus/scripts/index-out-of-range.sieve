require ["index","fileinto"];
if header :index 9 :contains "x-tag" "" { fileinto "never"; } else { fileinto "oor"; }
