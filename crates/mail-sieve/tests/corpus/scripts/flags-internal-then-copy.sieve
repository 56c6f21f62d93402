require ["imap4flags","fileinto","copy"];
addflag "one";
fileinto :copy "F1";
addflag "two";
