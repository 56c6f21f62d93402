require ["vacation","reject"];
vacation "away"; reject "no";
