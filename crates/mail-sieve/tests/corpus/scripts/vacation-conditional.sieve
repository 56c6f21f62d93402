require ["vacation","fileinto"];
if not header :contains "subject" "Undelivered" { vacation :days 7 "Away for a week."; }
fileinto "while-away";
