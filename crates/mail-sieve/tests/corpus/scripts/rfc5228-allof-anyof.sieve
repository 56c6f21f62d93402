require "fileinto";
if allof (header :contains "from" "example", anyof (header :contains "subject" "lunch", header :contains "subject" "review")) { fileinto "work"; }
