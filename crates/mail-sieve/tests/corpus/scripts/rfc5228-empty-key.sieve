require "fileinto";
if header :contains "subject" "" { fileinto "has-subject"; }
if header :is "x-nonexistent" "" { fileinto "never"; }
