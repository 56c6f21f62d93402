require "fileinto";
if address :domain :is ["from","to"] "example.org" { fileinto "hit"; }
