require "fileinto";
if header :matches "subject" "FYI" { fileinto "fyi"; }
if header :matches "subject" "F?I" { fileinto "fyi2"; }
if header :matches "subject" "*?" { fileinto "nonempty"; }
