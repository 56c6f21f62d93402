require ["envelope","fileinto"];
if envelope :matches "from" "*@*.example" { fileinto "dot-example"; }
