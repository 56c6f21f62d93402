require ["fileinto"];
if header :contains "subject" "Réunion" { fileinto "Réunions"; }
if header :contains "subject" "会議" { fileinto "Meetings-JP"; }
if header :contains "from" "Lévesque" { fileinto "Henri"; }
