require "fileinto";
if address :is ["to","cc"] "bob@example.org" { fileinto "direct"; } else { fileinto "indirect"; }
