require ["fileinto","variables"];
if header :matches "subject" "*order #* has shipped*" { fileinto "orders/${2}"; }
