require "fileinto";
if header :contains "subject" "order" { fileinto "Shopping.Orders"; } else { fileinto "Misc/Other"; }
