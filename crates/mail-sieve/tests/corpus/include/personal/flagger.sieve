require ["imap4flags"];
addflag "inc-flag";
