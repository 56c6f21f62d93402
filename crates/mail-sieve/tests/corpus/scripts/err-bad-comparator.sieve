if header :comparator "i;nope" :is "a" "b" { keep; }
