if address :all :is "subject" "x" { discard; }
