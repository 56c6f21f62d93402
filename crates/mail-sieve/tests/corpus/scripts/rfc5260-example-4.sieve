require ["date", "variables", "fileinto"];
if date :matches "received" "year" "*" { set "year" "${1}"; }
if date :matches "received" "month" "*" { set "month" "${1}"; }
if string :is "${year}" "" { keep; } else { fileinto "INBOX.${year}.${month}"; }
