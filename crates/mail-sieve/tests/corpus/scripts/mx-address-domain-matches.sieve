require "fileinto";
if address :domain :matches ["from","to"] "*.net" { fileinto "hit"; }
