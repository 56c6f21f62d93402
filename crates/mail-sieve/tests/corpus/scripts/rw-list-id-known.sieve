require ["fileinto"];
if header :contains "list-id" ["debian-devel.lists.debian.org", "debian-user.lists.debian.org"] { fileinto "Debian"; }
elsif header :contains "list-id" "github.com" { fileinto "GitHub"; }
elsif exists "list-unsubscribe" { fileinto "Newsletters"; }
