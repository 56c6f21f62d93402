"""Drives a POP3 server with Python's poplib.

usage: pop3_client.py HOST PORT USER PASSWORD MODE OUTDIR
MODE: stls (plain port, STLS first), ssl (implicit TLS), plain.
Writes message N to OUTDIR/N.eml (as RETR returned it, CRLF line ends),
prints one line per step, deletes message 1 and QUITs.
"""
import os
import poplib
import ssl
import sys

host, port, user, password, mode, outdir = sys.argv[1:7]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ctx, timeout=30)
else:
    p = poplib.POP3(host, int(port), timeout=30)
caps = p.capa()
print("capa-before:", sorted(caps))
if mode == "stls":
    p.stls(context=ctx)
    caps = p.capa()
    print("capa-after:", sorted(caps))
    assert "STLS" not in caps, caps
assert "USER" in caps and "UIDL" in caps and "TOP" in caps, caps
p.user(user)
p.pass_(password)
count, size = p.stat()
print("stat:", count, size)
resp, listing, _ = p.list()
sizes = [int(l.split()[1]) for l in listing]
assert len(sizes) == count and sum(sizes) == size, (listing, count, size)
resp, uidls, _ = p.uidl()
print("uidl:", [u.decode() for u in uidls])
if count:
    resp, top, _ = p.top(1, 0)
    print("top-lines:", len(top))
    assert top[-1] == b"", top  # header ends with the empty line
for n in range(1, count + 1):
    resp, lines, octets = p.retr(n)
    data = b"\r\n".join(lines) + b"\r\n"
    with open(os.path.join(outdir, f"{n}.eml"), "wb") as f:
        f.write(data)
if count:
    print("dele:", p.dele(1).decode())
print("quit:", p.quit().decode())
