require ["date", "variables", "fileinto"];
if currentdate :matches "month" "*" { set "month" "${1}"; }
if currentdate :matches "year"  "*" { set "year"  "${1}"; }
if string :matches "${year}-${month}" "????-??" { fileinto "INBOX.dated"; }
