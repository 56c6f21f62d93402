require "fileinto";
if header :is :comparator "i;octet" "subject" "Lunch on Friday?" { fileinto "hit"; }
