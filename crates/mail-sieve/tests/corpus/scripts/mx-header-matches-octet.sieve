require "fileinto";
if header :matches :comparator "i;octet" "subject" "*on*?" { fileinto "hit"; }
