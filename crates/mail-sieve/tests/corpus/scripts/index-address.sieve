require ["index","fileinto"];
if address :index 2 :is "to" "bob@example.org" { fileinto "second-to"; }
