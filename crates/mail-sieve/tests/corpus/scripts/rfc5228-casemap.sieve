require "fileinto";
if header :comparator "i;ascii-casemap" :is "subject" "LUNCH ON FRIDAY?" { fileinto "ci"; }
