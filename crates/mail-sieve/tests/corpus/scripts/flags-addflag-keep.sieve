require "imap4flags";
if header :contains "subject" "URGENT" { addflag "\\Flagged"; }
keep;
