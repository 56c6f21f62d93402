require "imap4flags";
setflag "\\Seen \\Flagged foo";
removeflag "\\Flagged";
