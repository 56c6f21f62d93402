"""Memory of COMPRESS=DEFLATE sessions (issue #14): N sessions log in,
(optionally) turn on COMPRESS=DEFLATE, SELECT INBOX and FETCH a 290 KB
message; prints the growth per session of the server's proportional set
size (PSS, summed over PID and every process below it, so a server with a
process per session, such as Dovecot, is counted whole and shared pages
are not counted twice).

usage: python3 bench/compress-memory.py HOST PORT USER PASSWORD PID N COMPRESS(0|1)
Driven by bench/compress-memory, which runs it against both servers.
"""
import imaplib, os, sys, time, zlib
host, port, user, password, pid, n, comp = sys.argv[1:8]
port, n, comp = int(port), int(n), comp == "1"
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))

def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [int(root)]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out

def pss():
    total = 0
    for p in tree(pid):
        try:
            for l in open(f"/proc/{p}/smaps_rollup"):
                if l.startswith("Pss:"):
                    total += int(l.split()[1])
        except OSError:
            pass
    return total

def login():
    m = imaplib.IMAP4(host, port)
    m.login(user, password)
    return m

m = login()
body = b"Subject: big\r\n\r\n" + b"".join(b"line %d of a message that varies a little\r\n" % i for i in range(6000))
m.append("INBOX", None, None, body)
m.logout()
conns = []
time.sleep(1)
base = pss()
for i in range(n):
    m = login()
    cmd = b"a1 SELECT INBOX\r\na2 FETCH 1 BODY.PEEK[]\r\n"
    if comp:
        typ, _ = m._simple_command("COMPRESS", "DEFLATE")
        assert typ == "OK", typ
        c = zlib.compressobj(6, zlib.DEFLATED, -15); d = zlib.decompressobj(-15)
        m.sock.sendall(c.compress(cmd) + c.flush(zlib.Z_SYNC_FLUSH))
        buf = b""
        while b"a2 OK" not in buf: buf += d.decompress(m.sock.recv(65536))
    else:
        m.sock.sendall(cmd)
        buf = b""
        while b"a2 OK" not in buf: buf += m.sock.recv(65536)
    conns.append(m)
time.sleep(1)
delta = pss() - base
print("%s sessions %d %s: PSS delta %d KiB, per session %.1f KiB"
      % (host + ":" + str(port), n, "compressed" if comp else "plain", delta, delta / n))
