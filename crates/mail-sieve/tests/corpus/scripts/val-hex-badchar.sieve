require ["encoded-character","fileinto"];
fileinto "a${hex:4g}b";
