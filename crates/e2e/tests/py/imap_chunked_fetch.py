"""A large message downloaded in chunks, as Thunderbird does
(`BODY.PEEK[]<offset.65536>` until the size), through Python's imaplib, a
client we did not write; each chunk, and partials of the whole message
beside other items, must equal the same bytes of the whole message.

usage: imap_chunked_fetch.py HOST PORT USER PASSWORD
Prints "ALL OK" at the end.
"""
import imaplib
import re
import sys

host, port, user, password = sys.argv[1:5]
m = imaplib.IMAP4(host, int(port))
m.login(user, password)

# About 1.1 MB, every line numbered: a chunk cut in the wrong place shows.
lines = "".join("line %07d of a message downloaded in chunks\r\n" % i for i in range(24000))
msg = ("From: a@remote.example\r\nTo: %s\r\nSubject: chunks\r\n"
       "Message-ID: <chunks@remote.example>\r\n\r\n" % user + lines).encode()
typ, data = m.append("INBOX", None, None, msg)
assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = m.uid("SEARCH", None, "ALL")
uid = data[0].split()[-1].decode()

def literals(data):
    """(item header, bytes) of every literal in a FETCH response."""
    return [(d[0], d[1]) for d in data if isinstance(d, tuple)]

typ, data = m.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])")
assert typ == "OK", (typ, data)
size = int(re.search(rb"RFC822\.SIZE (\d+)", data[0][0]).group(1))
whole = literals(data)[0][1]
assert whole == msg and size == len(msg), (size, len(whole), len(msg))

# Chunk by chunk, 64 KiB each, as Thunderbird's fetch_by_chunks.
got = b""
offset = 0
while offset < size:
    typ, data = m.uid("FETCH", uid, "(UID RFC822.SIZE BODY.PEEK[]<%d.65536>)" % offset)
    assert typ == "OK", (typ, data)
    (head, chunk), = literals(data)
    assert (b"BODY[]<%d>" % offset) in head, head
    assert chunk == msg[offset:offset + 65536], offset
    got += chunk
    offset += len(chunk)
assert got == msg

# Two partials far apart in one FETCH, and one past the end.
typ, data = m.uid("FETCH", uid, "(BODY.PEEK[]<100.10> FLAGS BODY.PEEK[]<700000.20>)")
assert typ == "OK", (typ, data)
parts = literals(data)
assert [p[1] for p in parts] == [msg[100:110], msg[700000:700020]], parts
typ, data = m.uid("FETCH", uid, "(BODY.PEEK[]<%d.10>)" % (size + 5))
assert typ == "OK", (typ, data)
joined = b"".join(d if isinstance(d, bytes) else d[0] + d[1] for d in data)
assert re.search(rb'BODY\[\]<%d> (""|\{0\})' % (size + 5), joined), data
# A partial of the text beside one of the whole message: both right.
typ, data = m.uid("FETCH", uid, "(BODY.PEEK[TEXT]<10.20> BODY.PEEK[]<500000.30>)")
assert typ == "OK", (typ, data)
body = msg[msg.index(b"\r\n\r\n") + 4:]
assert [p[1] for p in literals(data)] == [body[10:30], msg[500000:500030]], data
# Without PEEK a chunk sets \Seen (RFC 9051 6.4.5).
typ, data = m.uid("FETCH", uid, "(BODY[]<300000.5>)")
assert typ == "OK", (typ, data)
assert literals(data)[0][1] == msg[300000:300005], data
typ, data = m.uid("FETCH", uid, "(FLAGS)")
assert b"\\Seen" in data[0], data
m.logout()
print("ALL OK")
