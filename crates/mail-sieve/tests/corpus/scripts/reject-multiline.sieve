require "reject";
if size :over 10K { reject text:
Your message is too large.
Please send a link instead.
.
; }
