require ["fileinto","envelope","subaddress","variables","mailbox"];
if envelope :detail :matches "to" "?*" {
  set :upperfirst "f" "${1}${2}";
  fileinto :create "Plus/${f}";
}
