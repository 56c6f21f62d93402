require ["fileinto","imap4flags"];
if header :matches "X-Spam-Status" "Yes,*" { setflag "\\Seen"; fileinto "Junk"; }
