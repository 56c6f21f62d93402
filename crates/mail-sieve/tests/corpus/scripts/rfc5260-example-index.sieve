require ["date", "relational", "index", "fileinto"];
if date :value "gt" :index 1 :zone "-0500" "received" "iso8601" "2007-02-26T09:00:00-05:00"
{ fileinto "recent"; }
