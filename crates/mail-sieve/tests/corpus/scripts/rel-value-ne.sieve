require ["relational","fileinto"];
if header :value "ne" "x-spam-flag" "YES" { fileinto "not-spam"; }
