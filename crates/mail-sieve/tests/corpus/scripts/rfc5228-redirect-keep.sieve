if header :contains "subject" "invoice" { redirect "accounts@example.com"; keep; }
