require ["encoded-character", "fileinto"];
if header :contains "Subject" "$${hex:24 24}" { discard; }
if header :contains "Subject" "${unicode:2028}" { fileinto "weird"; }
fileinto "${hex:52 c3 a9}union";
