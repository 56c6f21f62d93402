require "fileinto";
if address :domain :contains ["from","to"] "ample" { fileinto "hit"; }
