redirect "one@example.net"; redirect "two@example.net";
