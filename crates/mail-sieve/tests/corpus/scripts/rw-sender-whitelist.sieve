require ["fileinto"];
if not address :domain :is "from" ["example.com","example.org","example.net"] { fileinto "Unknown"; }
