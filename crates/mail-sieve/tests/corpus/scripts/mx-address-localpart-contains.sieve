require "fileinto";
if address :localpart :contains ["from","to"] "o" { fileinto "hit"; }
