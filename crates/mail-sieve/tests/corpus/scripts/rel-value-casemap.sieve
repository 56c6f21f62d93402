require ["relational","fileinto"];
if header :value "lt" "subject" "M" { fileinto "a-to-l"; }
