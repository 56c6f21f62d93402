require "fileinto";
if not header :contains ["to","cc"] "bob" { fileinto "not-for-bob"; }
