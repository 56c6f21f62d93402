require ["imap4flags","fileinto"];
addflag "\\Flagged";
if hasflag :is "\\flagged" { fileinto "flagged"; }
if hasflag :contains "seen" { fileinto "seen"; }
