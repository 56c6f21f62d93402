require ["fileinto","variables","mailbox"];
if exists "list-id" {
  if header :matches "list-id" "*<*.*>" {
    set :lower "name" "${2}";
    fileinto :create "Lists/${name}";
    stop;
  }
}
