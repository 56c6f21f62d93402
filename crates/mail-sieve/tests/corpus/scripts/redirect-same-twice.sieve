redirect "one@example.net"; redirect "one@example.net";
