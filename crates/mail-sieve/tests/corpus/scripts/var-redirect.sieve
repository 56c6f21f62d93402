require ["variables","envelope"];
if envelope :localpart :matches "to" "*+*" { redirect "${1}-${2}@example.net"; }
