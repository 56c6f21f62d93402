require ["duplicate","fileinto"];
if duplicate :header "subject" :seconds 3600 { discard; } else { fileinto "first"; }
