require "fileinto";
if address :all :is ["from","to"] "alice@example.com" { fileinto "hit"; }
