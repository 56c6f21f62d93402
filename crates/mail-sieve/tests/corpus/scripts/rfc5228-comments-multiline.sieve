/* A bracketed comment
   over lines */ require ["fileinto"]; # hash comment
if header :contains "subject" text:
Re:
.
{ fileinto text: # comment after text:
Archive
.
; }
