require "fileinto";
if address :all :contains ["from","to"] "example" { fileinto "hit"; }
