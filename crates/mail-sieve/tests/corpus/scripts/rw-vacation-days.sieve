require ["vacation","fileinto"];
if header :is "X-Spam-Flag" "YES" { fileinto "Junk"; stop; }
vacation :days 7 :addresses ["bob@example.org", "robert@example.org"] :subject "Away" text:
Hello,

I am on holiday until 2 April, with no e-mail.
For urgent matters contact carol@example.net.

Bob
.
;
