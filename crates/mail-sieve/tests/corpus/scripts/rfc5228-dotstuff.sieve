require "reject";
if header :contains "subject" "spam-test-nothing-matches" { reject text:
..leading dot
line two
.
; }
