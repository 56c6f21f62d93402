require ["imap4flags", "fileinto", "variables"];
if size :over 1k {
    addflag "MyFlags" "Big";
    if header :is "From" "boss@company.example.com" {
        addflag "MyFlags" "\\Flagged";
        fileinto :flags "${MyFlags}" "INBOX.From Boss";
    }
} else {
    addflag "MyFlags" "Small";
}
addflag "MyFlags" "Tiny";
removeflag "MyFlags" "Small Tiny";
if hasflag :contains "MyFlags" "Big" { fileinto :flags "${MyFlags}" "Big-ones"; }
