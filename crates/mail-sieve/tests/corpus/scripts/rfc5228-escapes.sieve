require "fileinto";
if header :contains "subject" "\"final\"" { fileinto "quoted"; }
if header :contains "subject" "*final*" { fileinto "stars"; }
if header :matches "subject" "*\\*final\\**" { fileinto "escaped-stars"; }
