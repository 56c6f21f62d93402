require ["fileinto","body"];
if body :content "application" :contains "" { fileinto "With-Attachments"; }
