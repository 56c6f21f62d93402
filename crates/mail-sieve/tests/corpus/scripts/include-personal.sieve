require ["include","fileinto"];
include :personal "lists";
fileinto "after-include";
