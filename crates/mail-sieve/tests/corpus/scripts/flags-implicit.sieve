require "imap4flags";
addflag ["\\Seen", "$Label1"];
