require ["variables","fileinto"];
if header :matches "List-Id" "*<*.*>*" { fileinto "lists/${2}"; }
