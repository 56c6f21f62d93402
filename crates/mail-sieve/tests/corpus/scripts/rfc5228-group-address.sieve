require "fileinto";
if address :all :is "to" "undisclosed-recipients" { fileinto "g1"; }
if address :domain :contains "to" "example" { fileinto "g2"; }
