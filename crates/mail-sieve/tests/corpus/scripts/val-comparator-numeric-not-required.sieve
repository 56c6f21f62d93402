if header :comparator "i;ascii-numeric" :is "x-build" "7" { discard; }
