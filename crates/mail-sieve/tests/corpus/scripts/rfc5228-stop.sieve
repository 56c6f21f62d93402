require "fileinto";
if header :contains "subject" "Re:" { fileinto "replies"; stop; }
fileinto "other";
