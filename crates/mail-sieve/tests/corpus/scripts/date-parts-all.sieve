require ["date","variables","fileinto"];
if date :originalzone :matches "date" "year" "*" { set "y" "${1}"; }
if date :originalzone :matches "date" "month" "*" { set "m" "${1}"; }
if date :originalzone :matches "date" "day" "*" { set "d" "${1}"; }
if date :originalzone :matches "date" "time" "*" { set "t" "${1}"; }
if date :originalzone :matches "date" "zone" "*" { set "z" "${1}"; }
if date :originalzone :matches "date" "julian" "*" { set "j" "${1}"; }
fileinto "${y}.${m}.${d}.${t}.${z}.${j}";
