require ["date","fileinto"];
if date :originalzone :is "date" "weekday" ["0","6"] { fileinto "weekend"; }
