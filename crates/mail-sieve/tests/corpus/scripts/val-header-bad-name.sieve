if header :is "bad name" "x" { discard; }
