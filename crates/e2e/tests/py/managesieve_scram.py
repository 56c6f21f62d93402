"""SCRAM-SHA-256 (RFC 5802, RFC 7677) over ManageSieve's AUTHENTICATE
(RFC 5804 2.1: challenges and responses as strings), with Python's scramp
as the SCRAM client (an implementation we did not write), on a connection
from a trusted network: the login works and the client checks the
server's signature; a wrong password is refused; "*" cancels.

usage: managesieve_scram.py HOST PORT USER PASSWORD
Prints "ALL OK" at the end.
"""
import base64
import socket
import sys

import scramp

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Conn:
    def __init__(self):
        self.s = socket.create_connection((host, port), timeout=30)
        self.f = self.s.makefile("rb")

    def line(self):
        line = self.f.readline()
        assert line.endswith(b"\r\n"), line
        return line[:-2].decode()

    def until_done(self):
        lines = []
        while True:
            l = self.line()
            lines.append(l)
            if l.startswith(("OK", "NO", "BYE")):
                return lines

    def send(self, text):
        self.s.sendall(text.encode() + b"\r\n")


def quoted(l):
    assert l.startswith('"') and l.endswith('"'), l
    return l[1:-1]


def scram(pw, cancel=False):
    c = Conn()
    caps = c.until_done()
    sasl = [l for l in caps if l.startswith('"SASL"')][0]
    assert "SCRAM-SHA-256" in sasl, caps
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, pw)
    first = base64.b64encode(client.get_client_first().encode()).decode()
    c.send(f'AUTHENTICATE "SCRAM-SHA-256" "{first}"')
    l = c.line()
    if not l.startswith('"'):
        return l
    if cancel:
        c.send('"*"')
        return c.line()
    client.set_server_first(base64.b64decode(quoted(l)).decode())
    final = base64.b64encode(client.get_client_final().encode()).decode()
    # The response as a literal this time.
    c.send("{%d+}\r\n%s" % (len(final), final))
    l = c.line()
    if not l.startswith('"'):
        return l
    client.set_server_final(base64.b64decode(quoted(l)).decode())
    c.send('""')
    l = c.line()
    if l.startswith("OK"):
        c.send("LISTSCRIPTS")
        assert c.until_done()[-1].startswith("OK")
    return l


r = scram(password)
assert r.startswith("OK"), r
print("scram ok, server signature verified")
r = scram(password + "-wrong")
assert r.startswith("NO"), r
print("wrong password refused")
r = scram(password, cancel=True)
assert r.startswith("NO"), r
print("cancel ok")
print("ALL OK")
