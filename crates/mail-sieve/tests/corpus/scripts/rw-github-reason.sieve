require ["fileinto","variables","imap4flags"];
if header :is "x-github-reason" "mention" { addflag "\\Flagged"; }
if header :matches "list-id" "*<*.*.github.com>" { fileinto "GitHub/${2}/${3}"; }
