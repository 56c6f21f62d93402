require ["encoded-character","fileinto"];
fileinto "a${hex:zz}b${unicode:}c";
