"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677, RFC 9266)
against the IMAP and POP3 gateways, with Python's scramp as the SCRAM
client (an implementation we did not write).

usage: sasl_scram.py PROTO HOST PORT USER PASSWORD MODE
PROTO: imap | pop3
MODE:
  plain   SCRAM-SHA-256 on a plaintext connection (imaplib / poplib);
          a wrong password is refused.
  plus    implicit TLS 1.3 through pyOpenSSL, whose
          export_keying_material(b"EXPORTER-Channel-Binding", 32) gives the
          RFC 9266 tls-exporter binding: SCRAM-SHA-256-PLUS logs in; a
          binding from another connection is refused (RFC 5802 6); and
          SCRAM-SHA-256 with the "y" flag (client binds, thinks the server
          cannot) is refused as a downgrade while the server offers -PLUS.
Prints "ALL OK" at the end.
"""
import base64
import imaplib
import poplib
import socket
import sys

import scramp
from OpenSSL import SSL

# scramp 1.5 refuses the name "tls-exporter" only because Python's ssl
# module cannot export keying material (its README, "Missing tls-exporter
# channel binding support"); its SCRAM computations take the binding bytes
# as given. pyOpenSSL exports them, so the name is let through here and
# scramp does the rest unchanged.
scramp.core.CbName.SUPPORTED_TYPES = scramp.core.CbName.SUPPORTED_TYPES | {"tls-exporter"}
scramp.core.CbName.UNSUPPORTED_TYPES = frozenset()

proto, host, port, user, password, mode = sys.argv[1:7]
port = int(port)


def scram_auth_object(client, log):
    """imaplib's authobject: called with each decoded challenge."""
    step = [0]

    def auth(challenge):
        step[0] += 1
        if step[0] == 1:
            msg = client.get_client_first()
        elif step[0] == 2:
            client.set_server_first(challenge.decode())
            msg = client.get_client_final()
        else:
            # RFC 5802 5: the client checks the ServerSignature.
            client.set_server_final(challenge.decode())
            log.append("server signature verified")
            return b""
        return msg.encode()

    return auth


def imap_plain():
    m = imaplib.IMAP4(host, port)
    assert "AUTH=SCRAM-SHA-256" in m.capabilities, m.capabilities
    # RFC 9266 3: no tls-exporter without TLS 1.3, so no -PLUS.
    assert "AUTH=SCRAM-SHA-256-PLUS" not in m.capabilities, m.capabilities
    log = []
    c = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    typ, data = m.authenticate("SCRAM-SHA-256", scram_auth_object(c, log))
    assert typ == "OK", (typ, data)
    assert log == ["server signature verified"], log
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    m = imaplib.IMAP4(host, port)
    c = scramp.ScramClient(["SCRAM-SHA-256"], user, password + "-wrong")
    try:
        m.authenticate("SCRAM-SHA-256", scram_auth_object(c, []))
        raise AssertionError("a wrong password logged in")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    m.logout()
    print("imap plain ok")


class Pop3Raw:
    """poplib has no AUTH; RFC 5034 over its socket file."""

    def __init__(self, p):
        self.p = p

    def auth(self, mech, client):
        p = self.p
        p._putcmd("AUTH " + mech)
        line = p._getline()[0]
        assert line.startswith(b"+"), line
        p._putline(base64.b64encode(client.get_client_first().encode()))
        line = p._getline()[0]
        if not line.startswith(b"+ "):
            return line
        client.set_server_first(base64.b64decode(line[2:]).decode())
        p._putline(base64.b64encode(client.get_client_final().encode()))
        line = p._getline()[0]
        if not line.startswith(b"+ "):
            return line
        client.set_server_final(base64.b64decode(line[2:]).decode())
        p._putline(b"")
        return p._getline()[0]


def pop3_plain():
    p = poplib.POP3(host, port, timeout=30)
    caps = p.capa()
    assert "SCRAM-SHA-256" in caps["SASL"], caps
    assert "SCRAM-SHA-256-PLUS" not in caps["SASL"], caps
    c = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    r = Pop3Raw(p).auth("SCRAM-SHA-256", c)
    assert r.startswith(b"+OK"), r
    count, _ = p.stat()
    p.quit()
    p = poplib.POP3(host, port, timeout=30)
    c = scramp.ScramClient(["SCRAM-SHA-256"], user, password + "-wrong")
    r = Pop3Raw(p).auth("SCRAM-SHA-256", c)
    assert r.startswith(b"-ERR [AUTH]"), r
    p.quit()
    print("pop3 plain ok")


class TlsLines:
    """A line-based client over pyOpenSSL (TLS 1.3 only)."""

    def __init__(self):
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        sock = socket.create_connection((host, port), timeout=30)
        # pyOpenSSL wants a blocking socket (a timeout makes it
        # non-blocking: WantReadError mid-handshake).
        sock.settimeout(None)
        self.c = SSL.Connection(ctx, sock)
        self.c.set_connect_state()
        self.c.do_handshake()
        assert self.c.get_protocol_version_name() == "TLSv1.3"
        self.buf = b""

    def exporter(self):
        return self.c.export_keying_material(b"EXPORTER-Channel-Binding", 32)

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.c.recv(65536)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data):
        self.c.sendall(data + b"\r\n")


def exchange(t, start, client, ok_prefix):
    """Runs a SCRAM exchange after `start` (the AUTH/AUTHENTICATE line);
    returns the server's final line."""
    t.send(start)
    line = t.line()
    assert line.startswith(b"+"), line
    t.send(base64.b64encode(client.get_client_first().encode()))
    line = t.line()
    if not line.startswith(b"+ "):
        return line
    client.set_server_first(base64.b64decode(line[2:]).decode())
    t.send(base64.b64encode(client.get_client_final().encode()))
    line = t.line()
    if not line.startswith(b"+ "):
        return line
    client.set_server_final(base64.b64decode(line[2:]).decode())
    t.send(b"")
    return t.line()


def plus():
    def connect():
        t = TlsLines()
        greeting = t.line()
        if proto == "imap":
            assert greeting.startswith(b"* OK"), greeting
            t.send(b"c CAPABILITY")
            caps = t.line()
            assert t.line().startswith(b"c OK")
        else:
            assert greeting.startswith(b"+OK"), greeting
            t.send(b"CAPA")
            caps = b""
            while True:
                l = t.line()
                if l == b".":
                    break
                caps += l + b" "
        assert b"SCRAM-SHA-256-PLUS" in caps, caps
        return t

    start = {
        "imap": lambda m: b"a AUTHENTICATE " + m.encode(),
        "pop3": lambda m: b"AUTH " + m.encode(),
    }[proto]
    good = b"a OK" if proto == "imap" else b"+OK"
    bad = b"a NO [AUTHENTICATIONFAILED]" if proto == "imap" else b"-ERR [AUTH]"

    # RFC 9266 / RFC 5802 6: this connection's exporter binds the login.
    t = connect()
    c = scramp.ScramClient(
        ["SCRAM-SHA-256-PLUS"], user, password, channel_binding=("tls-exporter", t.exporter())
    )
    r = exchange(t, start("SCRAM-SHA-256-PLUS"), c, good)
    assert r.startswith(good), r
    print("plus ok")

    # Another connection's binding (a man in the middle's) is refused.
    other = connect()
    t = connect()
    c = scramp.ScramClient(
        ["SCRAM-SHA-256-PLUS"],
        user,
        password,
        channel_binding=("tls-exporter", other.exporter()),
    )
    r = exchange(t, start("SCRAM-SHA-256-PLUS"), c, good)
    assert r.startswith(bad), r
    print("foreign binding refused")

    # RFC 5802 6: "y" while the server offers -PLUS is a downgrade.
    t = connect()
    c = scramp.ScramClient(
        ["SCRAM-SHA-256"], user, password, channel_binding=("tls-exporter", t.exporter())
    )
    first = c.get_client_first()
    assert first.startswith("y,"), first
    t.send(start("SCRAM-SHA-256"))
    assert t.line().startswith(b"+")
    t.send(base64.b64encode(first.encode()))
    r = t.line()
    assert r.startswith(bad), r
    print("downgrade refused")


if mode == "plain":
    imap_plain() if proto == "imap" else pop3_plain()
elif mode == "plus":
    plus()
else:
    raise SystemExit("unknown mode " + mode)
print("ALL OK")
