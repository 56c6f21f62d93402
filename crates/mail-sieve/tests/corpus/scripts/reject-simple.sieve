require "reject";
if header :contains "x-spam-flag" "YES" { reject "Spam is not welcome here."; }
