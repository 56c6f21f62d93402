require ["fileinto","comparator-i;ascii-numeric"];
if header :is :comparator "i;ascii-numeric" "x-error-count" "042" { fileinto "42"; }
