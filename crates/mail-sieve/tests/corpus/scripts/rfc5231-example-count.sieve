require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"] { fileinto "3-or-more"; }
if header :count "lt" :comparator "i;ascii-numeric" ["received"] ["2"] { fileinto "few-hops"; }
