require "fileinto";
if header :comparator "i;octet" :is "subject" "Lunch on Friday?" { fileinto "exact"; }
if header :comparator "i;octet" :contains "subject" "lunch" { fileinto "lower"; }
