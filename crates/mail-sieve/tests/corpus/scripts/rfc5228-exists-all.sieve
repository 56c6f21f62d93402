require "fileinto";
if exists ["From","To","Subject","Date","Message-ID"] { fileinto "complete"; }
