require "fileinto";
if header :is "subject" "a subject that is folded with a tab  and with a tab plus a space" { fileinto "folded"; }
if header :contains "x-spam-status" "score=12.5" { fileinto "status"; }
