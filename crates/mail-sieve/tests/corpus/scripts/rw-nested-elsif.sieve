require ["fileinto","envelope"];
if header :contains "subject" "[URGENT]" {
  if address :domain :is "from" "example.com" { fileinto "Urgent/Internal"; }
  elsif address :domain :is "from" "example.org" { fileinto "Urgent/Org"; }
  else { fileinto "Urgent/External"; }
} elsif header :contains "subject" ["invoice", "order"] {
  if size :over 2K { fileinto "Finance/Large"; } else { fileinto "Finance"; }
} elsif envelope :domain :is "from" "github.com" {
  fileinto "Dev";
} else {
  keep;
}
