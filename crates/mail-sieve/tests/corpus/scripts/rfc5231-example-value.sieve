require ["relational", "fileinto"];
if address :value "gt" :all :comparator "i;ascii-casemap" ["from"] ["M"] { fileinto "from-n-z"; }
