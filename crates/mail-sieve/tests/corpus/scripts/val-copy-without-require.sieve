require "fileinto";
fileinto :copy "x";
