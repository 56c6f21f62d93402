require "fileinto";
if address :localpart :matches ["from","to"] "?o*" { fileinto "hit"; }
