"""MULTISEARCH (RFC 7377) and non-ASCII SEARCH through Python's imaplib and
smtplib, clients we did not write.

usage: imap_multisearch.py HOST IMAP_PORT SMTP_PORT USER PASSWORD
Delivers messages over SMTP, files them into ten folders with MOVE, then
searches every folder at once and checks each folder's answer against a
SEARCH in that folder; then searches text that arrived in ISO-8859-1 and
in encoded words with a UTF-8 literal. Asserts as it goes; prints
"ALL OK" at the end.
"""
import imaplib
import re
import smtplib
import ssl
import sys

host, imap_port, smtp_port, user, password = sys.argv[1:6]
imaplib.Commands.setdefault("ESEARCH", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("UNSELECT", ("SELECTED",))

# Ten folders; "Caf&AOk-" is "Café" in modified UTF-7 (RFC 3501 5.1.3),
# as a client that did not ENABLE UTF8=ACCEPT names it.
FOLDERS = ["INBOX", "Work", "Work/2026", "Work/2026/Q1", "Lists",
           "Lists/rust", "Travel", "Receipts", "Family", "Caf&AOk-"]
PER_FOLDER = 3


def plain(f, i):
    needle = " needle" if (f + i) % 2 == 0 else ""
    rare = " rarissimo" if (f, i) == (7, 2) else ""
    return ("From: Sender <sender@remote.example>\r\nTo: %s\r\n"
            "Subject: f%d-m%d\r\nX-Folder: %d\r\n"
            "Message-ID: <f%d-m%d@remote.example>\r\n\r\n"
            "message %d of folder %d%s%s\r\n"
            % (user, f, i, f, f, i, i, f, needle, rare)).encode()


# Text that arrives in ISO-8859-1 (quoted-printable and 8 bits) and in an
# encoded word; all filed in INBOX.
LATIN = [
    b"From: a@remote.example\r\nSubject: qp\r\nX-Folder: 0\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Sch=F6ne Gr=FC=DFe aus K=F6ln\r\n",
    b"From: b@remote.example\r\nSubject: 8bit\r\nX-Folder: 0\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe aus K\xf6ln\r\n",
    b"From: c@remote.example\r\n"
    b"Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\nX-Folder: 0\r\n"
    b"\r\nplain ascii\r\n",
    b"From: d@remote.example\r\nSubject: other\r\nX-Folder: 0\r\n"
    b"\r\nGruesse aus Koeln\r\n",
]

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(host, int(smtp_port), local_hostname="client.example",
                  timeout=30) as s:
    s.starttls(context=ctx)
    s.ehlo()
    for f in range(len(FOLDERS)):
        for i in range(PER_FOLDER):
            assert s.sendmail("sender@remote.example", [user], plain(f, i)) == {}
    for m in LATIN:
        assert s.sendmail("sender@remote.example", [user], m,
                          mail_options=["BODY=8BITMIME"]) == {}

m = imaplib.IMAP4(host, int(imap_port))
m.login(user, password)
assert "MULTISEARCH" in m.capabilities and "ESEARCH" in m.capabilities, m.capabilities
for name in FOLDERS[1:]:
    typ, data = m.create(name)
    assert typ == "OK", (name, data)

# File every message by its X-Folder (delivery was acknowledged, so all
# are there).
total = len(FOLDERS) * PER_FOLDER + len(LATIN)
typ, data = m.select("INBOX")
assert typ == "OK" and int(data[0]) == total, data
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-FOLDER)])")
by_folder = {}
for item in data:
    if not isinstance(item, tuple):
        continue
    uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
    f = int(re.search(rb"X-Folder: (\d+)", item[1]).group(1))
    by_folder.setdefault(f, []).append(uid)
for f, uids in sorted(by_folder.items()):
    if f == 0:
        continue
    typ, data = m.uid("MOVE", ",".join(map(str, uids)), FOLDERS[f])
    assert typ == "OK", (f, data)


def tag_of_last():
    return (m.tagpre + str(m.tagnum - 1).encode()).decode()


LINE = re.compile(rb'^\(TAG "([^"]+)" MAILBOX "((?:[^"\\]|\\.)*)" '
                  rb'UIDVALIDITY (\d+)\) UID(.*)$')


def seq_set(s):
    out = []
    for part in s.split(","):
        a, _, b = part.partition(":")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def esearch(*args, literal=None, want="OK"):
    """Runs ESEARCH; returns {mailbox: (uidvalidity, data dict)}."""
    if literal is not None:
        m.literal = literal
    typ, data = m._simple_command("ESEARCH", *args)
    assert typ == want, (args, typ, data)
    tag = tag_of_last()
    out = {}
    for line in m.untagged_responses.pop("ESEARCH", []):
        g = LINE.match(line)
        assert g, line
        assert g.group(1).decode() == tag, (line, tag)
        name = g.group(2).decode()
        assert name not in out, ("mailbox twice", line)
        items = g.group(4).split()
        d = {}
        for k, v in zip(items[::2], items[1::2]):
            d[k.decode()] = v.decode()
        if "ALL" in d:
            d["ALL"] = seq_set(d["ALL"])
        out[name] = (int(g.group(3)), d)
    return out


# The oracle: each folder's own UID SEARCH and UIDVALIDITY.
validity = {}
oracle = {}
for name in FOLDERS:
    typ, data = m.status(name, "(UIDVALIDITY)")
    validity[name] = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
    m.select(name, readonly=True)
    typ, data = m.uid("SEARCH", "BODY", "needle")
    uids = [int(x) for x in data[0].split()]
    if uids:
        oracle[name] = uids
assert len(oracle) == len(FOLDERS), oracle
assert sum(len(u) for u in oracle.values()) == 15, oracle
typ, _ = m.unselect()
assert typ == "OK"

# RFC 7377 2: personal, in the authenticated state: one ESEARCH per
# folder with a match, with UIDs, MAILBOX and UIDVALIDITY.
got = esearch("IN", "(personal)", "RETURN", "(ALL COUNT)", "BODY", "needle")
assert set(got) == set(oracle), (got, oracle)
for name, (v, d) in got.items():
    assert v == validity[name], (name, v, validity)
    assert d["ALL"] == oracle[name], (name, d, oracle[name])
    assert int(d["COUNT"]) == len(oracle[name]), (name, d)

# Default RETURN is ALL; a folder without a match is not named.
got = esearch("IN", "(personal)", "BODY", "rarissimo")
assert list(got) == ["Receipts"] and got["Receipts"][1] == {"ALL": [3]}, got
assert esearch("IN", "(personal)", "BODY", "absent-everywhere") == {}

# subtree / subtree-one / mailboxes (a missing one passed over).
got = esearch("IN", "(subtree Work)", "RETURN", "(MIN MAX)", "BODY", "needle")
assert set(got) == {"Work", "Work/2026", "Work/2026/Q1"}, got
for name, (_, d) in got.items():
    assert int(d["MIN"]) == oracle[name][0] and int(d["MAX"]) == oracle[name][-1], d
got = esearch("IN", "(subtree-one (Work))", "BODY", "needle")
assert set(got) == {"Work", "Work/2026"}, got
got = esearch("IN", '(mailboxes ("Caf&AOk-" Travel Nowhere) inboxes)',
              "BODY", "needle")
assert set(got) == {"Caf&AOk-", "Travel", "INBOX"}, got
assert got["Caf&AOk-"][1]["ALL"] == oracle["Caf&AOk-"], got

# In the selected state: no IN is the selected mailbox; "selected" joins
# the others.
m.select("Travel")
got = esearch("RETURN", "(COUNT)", "BODY", "needle")
assert set(got) == {"Travel"}, got
assert int(got["Travel"][1]["COUNT"]) == len(oracle["Travel"]), got
got = esearch("IN", "(selected subtree Lists)", "BODY", "needle")
assert set(got) == {"Travel", "Lists", "Lists/rust"}, got

# Non-ASCII, with CHARSET UTF-8 and the string as a literal (imaplib
# sends {n} and waits for the continuation).
latin_uids = by_folder[0][-len(LATIN):]
got = esearch("IN", "(personal)", "CHARSET", "UTF-8", "BODY",
              literal="köln".encode())
assert list(got) == ["INBOX"] and got["INBOX"][1]["ALL"] == latin_uids[:2], got
got = esearch("IN", "(inboxes)", "CHARSET", "UTF-8", "SUBJECT",
              literal="Grüße".encode())
assert got["INBOX"][1]["ALL"] == [latin_uids[2]], got
got = esearch("IN", "(personal)", "CHARSET", "UTF-8", "TEXT",
              literal="GRÜßE".encode())
assert got["INBOX"][1]["ALL"] == latin_uids[:3], got
typ, data = m._simple_command("ESEARCH", "IN", "(personal)", "CHARSET",
                              "ISO-8859-1", "ALL")
assert typ == "NO" and b"[BADCHARSET" in data[0], (typ, data)

# The same through plain SEARCH in the selected mailbox.
m.select("INBOX", readonly=True)
m.literal = "köln".encode()
typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", "BODY")
assert typ == "OK" and [int(x) for x in data[0].split()] == latin_uids[:2], data
m.literal = "Grüße".encode()
typ, data = m.search("UTF-8", "SUBJECT")
assert typ == "OK" and len(data[0].split()) == 1, data
m.logout()
print("ALL OK")
