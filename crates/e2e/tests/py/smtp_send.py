"""Sends one message with Python's smtplib.

usage: smtp_send.py HOST PORT FROM TO[,TO...] FILE [starttls|plain]
Prints the server's reply to the message, or the refused recipients.
"""
import smtplib
import ssl
import sys

host, port, sender, rcpts, path = sys.argv[1:6]
mode = sys.argv[6] if len(sys.argv) > 6 else "starttls"
data = open(path, "rb").read()
with smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=30) as s:
    s.ehlo()
    assert s.has_extn("starttls") == (mode == "starttls"), s.esmtp_features
    if mode == "starttls":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again inside TLS"
    assert s.has_extn("pipelining") and s.has_extn("chunking") and s.has_extn("8bitmime")
    assert s.has_extn("size"), s.esmtp_features
    refused = s.sendmail(sender, rcpts.split(","), data)
    print("refused:", refused)
    print("ok")
