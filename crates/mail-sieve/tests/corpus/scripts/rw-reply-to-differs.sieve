require ["fileinto","variables"];
if address :all :matches "reply-to" "*" { set "rt" "${1}"; }
if address :all :matches "from" "*" { set "fr" "${1}"; }
if not string :is "${rt}" ["${fr}", ""] { fileinto "reply-to-differs"; }
