require ["duplicate","fileinto"];
if duplicate { fileinto "dups"; }
