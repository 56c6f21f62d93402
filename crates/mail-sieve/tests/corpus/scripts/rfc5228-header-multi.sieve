require "fileinto";
if header :is "x-tag" "second" { fileinto "tagged"; }
