require "fileinto";
if address :localpart "from" "alice" { fileinto "alice"; }
elsif address :domain :is "from" "example.net" { fileinto "dotnet"; }
elsif address :all :contains "to" "bob" { fileinto "to-bob"; }
