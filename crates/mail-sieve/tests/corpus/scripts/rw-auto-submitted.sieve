require ["fileinto"];
if anyof (header :contains "auto-submitted" "auto-", header :is "precedence" ["bulk","list","junk"]) { fileinto "Automated"; }
