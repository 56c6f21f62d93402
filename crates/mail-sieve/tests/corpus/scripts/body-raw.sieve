require ["body","fileinto"];
if body :raw :contains "=E9" { fileinto "qp-raw"; }
if body :raw :contains "JVBERi" { fileinto "pdf-raw"; }
