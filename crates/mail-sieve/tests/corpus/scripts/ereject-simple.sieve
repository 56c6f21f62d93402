require "ereject";
if header :contains "x-spam-flag" "YES" { ereject "Spam refused."; }
