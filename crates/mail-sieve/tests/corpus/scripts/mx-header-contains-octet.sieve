require "fileinto";
if header :contains :comparator "i;octet" "subject" "friday" { fileinto "hit"; }
