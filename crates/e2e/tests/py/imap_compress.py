"""COMPRESS=DEFLATE (RFC 4978) with Python's imaplib and zlib, a client we
did not write: after COMPRESS DEFLATE both directions are raw DEFLATE.

usage: imap_compress.py HOST PORT USER PASSWORD MODE
MODE: plain, starttls (STARTTLS first), ssl (implicit TLS).
Prints "ALL OK" and the compression ratio of a large FETCH.
"""
import imaplib
import ssl
import sys
import zlib

host, port, user, password, mode = sys.argv[1:6]
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
else:
    m = imaplib.IMAP4(host, int(port))
    if mode == "starttls":
        m.starttls(ssl_context=ctx)
m.login(user, password)
assert "COMPRESS=DEFLATE" in m.capabilities, m.capabilities
typ, data = m._simple_command("COMPRESS", "DEFLATE")
assert typ == "OK", (typ, data)


class Deflated:
    """imaplib's send / readline / read over a raw DEFLATE stream."""

    def __init__(self, sock):
        self.sock = sock
        # A stalled server fails the test instead of hanging it.
        self.sock.settimeout(30)
        self.c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.d = zlib.decompressobj(-15)
        self.buf = b""
        self.wire_in = 0

    def send(self, data):
        self.sock.sendall(self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH))

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.wire_in += len(chunk)
        self.buf += self.d.decompress(chunk)

    def readline(self, *args):
        while b"\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


z = Deflated(m.sock)
m.send, m.readline, m.read = z.send, z.readline, z.read

# Everything works compressed: APPEND with a literal, SELECT, FETCH, SEARCH.
body = b"Subject: compressed\r\n\r\n" + b"The same line, over and over again.\r\n" * 3000
typ, data = m.append("INBOX", None, None, body)
assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
n = int(data[0])
before = z.wire_in
typ, data = m.fetch(str(n), "(BODY.PEEK[])")
assert typ == "OK" and data[0][1] == body, "the body came back intact"
ratio = (z.wire_in - before) / len(body)
assert ratio < 0.2, "the FETCH was compressed (ratio %.3f)" % ratio
# Literals that inflate to more than one read's worth in their last
# burst (the inflater holds output beyond what one step hands out).
for size in (65000, 70001, 80000, 96000, 131072, 200003):
    text = b"".join(b"%d lines of text, not all alike %d\r\n" % (i, i * 7) for i in range(size // 30))
    msg = (b"Subject: sized %d\r\n\r\n" % size) + text[:size]
    typ, data = m.append("INBOX", None, None, msg)
    assert typ == "OK", (size, typ, data)
typ, data = m.search(None, "SUBJECT", "compressed")
assert typ == "OK" and str(n).encode() in data[0].split(), data
# A second COMPRESS: NO [COMPRESSIONACTIVE] (RFC 4978 3).
typ, data = m._simple_command("COMPRESS", "DEFLATE")
assert typ == "NO" and b"COMPRESSIONACTIVE" in data[0], (typ, data)
typ, data = m.noop()
assert typ == "OK"
m.logout()

if mode == "plain":
    # Hostile input after COMPRESS: 64 MiB of one endless line squeezed
    # into ~64 KiB, then a stream that is not DEFLATE at all. Each session
    # is cut off; the server stays up for the next client.
    for payload in ("bomb", "garbage", "ended"):
        m = imaplib.IMAP4(host, int(port))
        m.login(user, password)
        m._simple_command("COMPRESS", "DEFLATE")
        sock = m.sock
        if payload == "bomb":
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            chunk = c.compress(b"a" * (1 << 20))
            try:
                for _ in range(64):
                    sock.sendall(chunk)
                sock.sendall(c.flush(zlib.Z_SYNC_FLUSH))
            except OSError:
                pass  # the server closed first
        elif payload == "ended":
            # A stream the client ends (BFINAL), then more bytes.
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            sock.sendall(c.compress(b"e1 NOOP\r\n") + c.flush(zlib.Z_FINISH))
            try:
                sock.sendall(b"x" * 100000)
            except OSError:
                pass
        else:
            try:
                sock.sendall(b"\xff" * 4096)
            except OSError:
                pass
        sock.settimeout(20)
        closed = False
        try:
            while sock.recv(65536):
                pass
            closed = True
        except OSError:
            closed = True
        assert closed, payload
    m = imaplib.IMAP4(host, int(port))
    m.login(user, password)
    assert m.noop()[0] == "OK"
    m.logout()
print("ALL OK ratio %.4f" % ratio)
