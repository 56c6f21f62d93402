require ["date","variables","fileinto"];
if date :zone "CET" :matches "date" "time" "*" { fileinto "t-${1}"; }
if date :zone "+2500" :matches "date" "zone" "*" { fileinto "z-${1}"; }
if date :zone "+0160" :matches "date" "hour" "*" { fileinto "y-${1}"; }
if exists "bad name" { fileinto "bad"; }
