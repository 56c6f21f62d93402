require ["fileinto","imap4flags","copy"];
if address :is "from" "boss@example.org" {
  addflag "\\Flagged";
  redirect :copy "bob-mobile@example.net";
  keep;
  stop;
}
