require ["imap4flags", "relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "gt" :comparator "i;ascii-numeric" "X-Spam-Score" "3" {
    addflag "$Junk";
}
if hasflag :count "ge" :comparator "i;ascii-numeric" "1" { fileinto "has-flags"; }
