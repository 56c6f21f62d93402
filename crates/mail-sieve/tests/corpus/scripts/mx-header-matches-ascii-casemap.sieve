require "fileinto";
if header :matches :comparator "i;ascii-casemap" "subject" "*on*?" { fileinto "hit"; }
