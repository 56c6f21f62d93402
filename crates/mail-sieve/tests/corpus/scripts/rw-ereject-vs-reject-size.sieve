require ["reject"];
if size :over 30K { reject "too big"; }
