if address :is "from" "boss@example.org" { redirect "bob-phone@example.net"; }
