require "fileinto"; fileinto "abc;
