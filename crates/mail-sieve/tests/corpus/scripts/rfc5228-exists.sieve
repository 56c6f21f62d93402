require "fileinto";
if exists ["From", "Date"] { fileinto "has-from-date"; }
if not exists "Message-ID" { fileinto "no-msgid"; }
