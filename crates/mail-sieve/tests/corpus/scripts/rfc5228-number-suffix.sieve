require "fileinto";
if size :over 1k { fileinto "over1k"; }
if size :under 1M { fileinto "under1m"; }
if size :over 1G { fileinto "over1g"; }
