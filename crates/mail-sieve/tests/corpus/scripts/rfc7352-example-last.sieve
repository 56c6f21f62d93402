require ["duplicate", "fileinto"];
if duplicate :header "message-id" :handle "notify" :last { fileinto "seen-before"; } else { fileinto "new"; }
