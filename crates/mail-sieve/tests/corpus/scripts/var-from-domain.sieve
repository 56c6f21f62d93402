require ["variables","fileinto"];
if address :domain :matches "from" "*" { set "dom" "${0}"; }
if string :is "${dom}" "example.com" { fileinto "from-example-com"; }
