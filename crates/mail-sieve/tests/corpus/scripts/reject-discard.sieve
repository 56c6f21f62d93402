require "reject";
if header :contains "from" "lottery" { reject "go away"; discard; }
