require ["date", "relational", "fileinto"];
if anyof(date :is "date" "weekday" "0",
         date :is "date" "weekday" "6",
         date :value "lt" "date" "hour" "09",
         date :value "ge" "date" "hour" "17")
{ redirect "pager@example.com"; }
