require "fileinto";
if address :all :contains ["sender", "resent-from", "reply-to"] "example" { fileinto "aux"; }
