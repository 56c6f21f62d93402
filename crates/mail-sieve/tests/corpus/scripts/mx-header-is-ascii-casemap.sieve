require "fileinto";
if header :is :comparator "i;ascii-casemap" "subject" "Lunch on Friday?" { fileinto "hit"; }
