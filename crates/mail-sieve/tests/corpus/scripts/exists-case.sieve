require "fileinto";
if exists "LIST-ID" { fileinto "has-list-id"; }
if exists ["x-spam-flag", "X-SPAM-SCORE"] { fileinto "spam-headers"; }
