require ["imap4flags"];
if anyof (header :contains "x-priority" ["1", "2"], header :is "importance" "high") { addflag "\\Flagged"; }
