require "fileinto";
if address :all :matches ["from","to"] "*@*.org" { fileinto "hit"; }
