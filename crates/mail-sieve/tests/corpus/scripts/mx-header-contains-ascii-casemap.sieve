require "fileinto";
if header :contains :comparator "i;ascii-casemap" "subject" "friday" { fileinto "hit"; }
