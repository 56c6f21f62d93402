require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "bob" {
    if envelope :detail "to" "debian" { fileinto "lists.debian"; }
    elsif envelope :detail "to" "github" { fileinto "lists.github"; }
    else { fileinto "bob"; }
}
if address :detail :is "to" "stats" { fileinto "stats"; }
