require "fileinto";
if size :under 1K { fileinto "small"; } elsif size :over 20K { fileinto "big"; } else { fileinto "medium"; }
