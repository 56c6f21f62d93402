require ["index","fileinto"];
if header :index 2 :is "x-tag" "second" { fileinto "idx2"; }
if header :index 1 :last :is "x-tag" "third" { fileinto "last1"; }
