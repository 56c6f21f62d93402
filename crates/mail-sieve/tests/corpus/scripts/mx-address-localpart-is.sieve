require "fileinto";
if address :localpart :is ["from","to"] "bob" { fileinto "hit"; }
