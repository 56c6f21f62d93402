require ["fileinto","envelope"];
if anyof (address :localpart :is "from" "mailer-daemon", header :contains "subject" "Undelivered") { fileinto "Bounces"; }
