require ["variables","fileinto"];
fileinto "a${foo.bar}b${}c${1x}";
