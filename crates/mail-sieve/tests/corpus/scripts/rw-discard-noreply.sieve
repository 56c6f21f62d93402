if address :localpart :contains "from" "noreply" { discard; }
