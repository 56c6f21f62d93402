require "envelope";
if envelope :all :is "auth" "x" { discard; }
