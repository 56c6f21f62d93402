"""Memory of COMPRESS=DEFLATE sessions (issue #14): N sessions log in,
(optionally) turn on COMPRESS=DEFLATE, SELECT INBOX and FETCH a 290 KB
message; prints the server process's VmRSS growth per session.

usage: python3 bench/compress-memory.py PID N COMPRESS(0|1)
against `mailctl up --demo --demo-password pw` (account demo@example.test
on 127.0.0.1:1143; PID is the mailctl process). N <= 45 (the per-address
connection limit is 50).
"""
import imaplib, sys, time, zlib
pid, n, comp = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
m = imaplib.IMAP4("127.0.0.1", 1143); m.login("demo@example.test", "pw")
body = b"Subject: big\r\n\r\n" + b"".join(b"line %d of a message that varies a little\r\n" % i for i in range(6000))
m.append("INBOX", None, None, body); m.logout()
conns = []
time.sleep(1)
base = rss()
for i in range(n):
    m = imaplib.IMAP4("127.0.0.1", 1143); m.login("demo@example.test", "pw")
    cmd = b"a1 SELECT INBOX\r\na2 FETCH 1 BODY.PEEK[]\r\n"
    if comp:
        m._simple_command("COMPRESS", "DEFLATE")
        c = zlib.compressobj(6, zlib.DEFLATED, -15); d = zlib.decompressobj(-15)
        m.sock.sendall(c.compress(cmd) + c.flush(zlib.Z_SYNC_FLUSH))
        buf=b""
        while b"a2 OK" not in buf: buf += d.decompress(m.sock.recv(65536))
    else:
        m.sock.sendall(cmd)
        buf=b""
        while b"a2 OK" not in buf: buf += m.sock.recv(65536)
    conns.append(m)
time.sleep(1)
d = rss() - base
print("sessions", n, "compressed" if comp else "plain", "after a 290 KB FETCH each: RSS delta KiB", d, "per session KiB %.1f" % (d/n))
