require ["envelope","fileinto"];
if envelope :domain :is "from" "lists.debian.org" { fileinto "debian"; }
elsif envelope :localpart :contains "from" "noreply" { fileinto "noreply"; }
