require ["body", "fileinto"];
if body :content "audio/mpeg" :matches "*" { fileinto "jukebox"; }
