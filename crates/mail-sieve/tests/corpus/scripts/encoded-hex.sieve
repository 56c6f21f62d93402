require ["encoded-character","fileinto"];
if header :contains "subject" "${hex:4c 75 6e 63 68}" { fileinto "${hex:4C}unch"; }
