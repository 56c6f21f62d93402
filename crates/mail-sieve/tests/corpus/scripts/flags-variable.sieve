require ["imap4flags","variables","fileinto"];
set "f" "";
addflag "f" "\\Answered";
addflag "f" "junk";
if hasflag :is "f" "junk" { fileinto :flags "${f}" "Junk"; }
