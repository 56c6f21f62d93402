require ["date","relational","fileinto"];
if allof (currentdate :value "ge" "date" "2000-01-01", currentdate :value "le" "date" "2999-12-31") { fileinto "in-range"; }
