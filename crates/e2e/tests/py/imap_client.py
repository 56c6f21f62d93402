"""Drives an IMAP server with Python's imaplib through every core command.

usage: imap_client.py HOST PORT USER PASSWORD MODE MESSAGE_FILE
MODE: starttls (plain port, STARTTLS first), ssl (implicit TLS), plain.
Asserts as it goes; prints "ALL OK" at the end.
"""
import imaplib
import re
import ssl
import sys
import time

host, port, user, password, mode, msgfile = sys.argv[1:7]
raw = open(msgfile, "rb").read()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


# Extensions this imaplib does not know by name.
for name, states in {"ID": ("NONAUTH", "AUTH", "SELECTED"), "MOVE": ("SELECTED",),
                     "UNSELECT": ("SELECTED",), "ENABLE": ("AUTH",)}.items():
    imaplib.Commands.setdefault(name, states)


def expect_bad(fn, *args):
    """imaplib raises on a tagged BAD."""
    try:
        res = fn(*args)
    except imaplib.IMAP4.error as e:
        assert "BAD" in str(e) or "command error" in str(e), e
        return
    raise AssertionError(f"expected BAD, got {res}")


def ok(res, what):
    typ, data = res
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def connect():
    if mode == "ssl":
        return imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
    c = imaplib.IMAP4(host, int(port))
    if mode == "starttls":
        c.starttls(ssl_context=ctx)
    return c


if mode == "ssl":
    M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
else:
    M = imaplib.IMAP4(host, int(port))
caps = M.capabilities
print("caps-before:", caps)
if mode == "starttls":
    assert "LOGINDISABLED" in caps and "AUTH=PLAIN" not in caps, caps
    # SCRAM in the clear can be attacked offline: not offered either.
    assert "AUTH=SCRAM-SHA-256" not in caps, caps
    try:
        M.login(user, password)
        raise AssertionError("LOGIN accepted before STARTTLS")
    except imaplib.IMAP4.error as e:
        print("login-refused:", e)
    ok(M.starttls(ssl_context=ctx), "starttls")
    caps = M.capabilities
    assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps, caps
try:
    M.login(user, "wrong-password")
    raise AssertionError("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
ok(M.login(user, password), "login")
ok(M.noop(), "noop")
ok(M._simple_command("ID", "NIL"), "id")
print("namespace:", ok(M.namespace(), "namespace"))

# LIST / CREATE / RENAME / DELETE / SUBSCRIBE / LSUB / STATUS
boxes = ok(M.list(), "list")
names = [b.decode() for b in boxes]
print("list:", names)
assert any('"INBOX"' in n for n in names)
assert any("\\Sent" in n and '"Sent"' in n for n in names), names
assert all('"/"' in n for n in names)
ok(M.create("Work/Projects"), "create")
assert M.create("Work/Projects")[0] == "NO"
ok(M.rename("Work/Projects", "Work/Done"), "rename")
names = [b.decode() for b in ok(M.list("\"\"", "Work/*"), "list pattern")]
assert len(names) == 1 and "Work/Done" in names[0], names
names = [b.decode() for b in ok(M.list("\"\"", "%"), "list %")]
assert any('"Work"' in n and "\\HasChildren" in n for n in names), names
ok(M.subscribe("Work/Done"), "subscribe")
lsub = [b.decode() for b in ok(M.lsub("\"\"", "*"), "lsub")]
assert any("Work/Done" in n for n in lsub), lsub
ok(M.unsubscribe("Work/Done"), "unsubscribe")
ok(M.delete("Work/Done"), "delete")
assert M.select("Work/Done")[0] == "NO"

# APPEND with flags and date (UIDPLUS APPENDUID)
typ, data = M.append("INBOX", r"(\Flagged $Label1)", imaplib.Time2Internaldate(time.gmtime(1700000000)), raw)
assert typ == "OK", data
m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
assert m, data
appended_uid = int(m.group(2))
ok(M.append("INBOX", None, None, b"Subject: second\r\n\r\nbody two\r\n"), "append 2")
ok(M.append("INBOX", r"(\Seen)", None, b"Subject: third\r\n\r\nbody three\r\n"), "append 3")
st = ok(M.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)"), "status")[0].decode()
print("status:", st)
assert "MESSAGES 3" in st and "UNSEEN 2" in st, st

# EXAMINE is read-only
typ, data = M.select("INBOX", readonly=True)
assert typ == "OK" and data == [b"3"], data
typ, data = M._simple_command("STORE", "1", "+FLAGS", r"(\Seen)")
assert typ == "NO" and b"READ-ONLY" in data[0], (typ, data)

# SELECT, FETCH
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"3"], data
typ, data = M.fetch("1", "(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])")
assert typ == "OK", data
head = data[0][0].decode()
body = data[0][1]
assert body == raw, ("BODY[] differs", body[:300], raw[:300])
assert f"UID {appended_uid}" in head and "\\Flagged" in head and "$Label1" in head, head
assert f"RFC822.SIZE {len(raw)}" in head, head
assert '"14-Nov-2023 22:13:20 +0000"' in head, head
typ, data = M.fetch("1", "(FLAGS)")
assert "\\Seen" not in data[0].decode(), "PEEK set \\Seen"
typ, data = M.fetch("1", "(ENVELOPE BODYSTRUCTURE BODY)")
assert typ == "OK"
print("envelope:", data[0][0][:200] if isinstance(data[0], tuple) else data[0][:200])
typ, data = M.fetch("2", "(BODY[HEADER] BODY[TEXT] BODY[1])")
assert typ == "OK", data
parts = [d for d in data if isinstance(d, tuple)]
assert parts[0][1] == b"Subject: second\r\n\r\n", parts
typ, data = M.fetch("2", "(FLAGS)")
assert "\\Seen" in data[0].decode(), "BODY[] did not set \\Seen: %r" % data
typ, data = M.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert len([d for d in data if isinstance(d, tuple)]) == 3, data
typ, data = M.fetch("1", "(BODY.PEEK[]<0.10>)")
assert data[0][1] == raw[:10], data
typ, data = M.fetch("1", "(BINARY.SIZE[1] BINARY.PEEK[1])")
assert typ == "OK", data
expect_bad(M.fetch, "9", "FLAGS")  # beyond EXISTS

# UID FETCH / SEARCH
typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
assert typ == "OK" and len(data) == 3, data
typ, data = M.search(None, "UNSEEN")
print("search unseen:", data)
assert data == [b"1"], data
typ, data = M.search(None, "FLAGGED")
assert data == [b"1"], data
typ, data = M.search(None, "SUBJECT", "second")
assert data == [b"2"], data
typ, data = M.search(None, "OR", "SEEN", "FLAGGED")
assert data == [b"1 2 3"], data
typ, data = M.search(None, "NOT", "SEEN", "KEYWORD", "$Label1")
assert data == [b"1"], data
typ, data = M.search(None, "BODY", "\"body three\"")
assert data == [b"3"], data
typ, data = M.search(None, "2:3", "LARGER", "10")
assert data == [b"2 3"], data
typ, data = M.search(None, "SINCE", "1-Jan-2020", "BEFORE", "1-Jan-2100")
assert data == [b"1 2 3"], data
typ, data = M.uid("SEARCH", "ALL")
uids = [int(x) for x in data[0].split()]
assert len(uids) == 3 and uids == sorted(uids), data

# STORE
typ, data = M.store("3", "+FLAGS", r"(\Deleted)")
assert typ == "OK" and b"\\Deleted" in data[0], data
typ, data = M.store("3", "-FLAGS.SILENT", r"(\Deleted)")
assert typ == "OK" and data == [None], data
typ, data = M.uid("STORE", str(uids[1]), "FLAGS", r"(\Answered)")
assert typ == "OK" and b"UID" in data[0], data

# COPY / MOVE (UIDPLUS COPYUID)
typ, data = M.copy("1:2", "Archive")
assert typ == "OK" and b"COPYUID" in data[0], data
assert M.copy("1", "NoSuchBox")[0] == "NO"
typ, data = M._simple_command("MOVE", "3", "Trash")
assert typ == "OK", data
typ, data = M.select("INBOX")
assert data == [b"2"], data
typ, data = M.status("Archive", "(MESSAGES)")
assert b"MESSAGES 2" in data[0], data
typ, data = M.status("Trash", "(MESSAGES)")
assert b"MESSAGES 1" in data[0], data

# EXPUNGE / UID EXPUNGE / CLOSE / UNSELECT
ok(M.store("1", "+FLAGS", r"(\Deleted)"), "store deleted")
typ, data = M.expunge()
assert typ == "OK" and data == [b"1"], data
typ, data = M.select("Archive")
ok(M.store("1:2", "+FLAGS", r"(\Deleted)"), "store deleted")
typ, data = M.uid("EXPUNGE", str(int(M.uid("SEARCH", "ALL")[1][0].split()[0])))
assert typ == "OK", data
ok(M.check(), "check")
ok(M.close(), "close")
typ, data = M.status("Archive", "(MESSAGES)")
assert b"MESSAGES 0" in data[0], data
ok(M.select("INBOX"), "select")
ok(M._simple_command("UNSELECT"), "unselect")
expect_bad(M._simple_command, "FETCH", "1", "FLAGS")  # nothing selected
M.state = "AUTH"  # imaplib does not track UNSELECT

# Modified UTF-7 names before ENABLE, UTF-8 after (RFC 6855). Python's
# imaplib wraps APPEND data wrongly once UTF-8 is enabled, so this comes last.
ok(M.create("&AMk-t&AOk-"), "create mutf7")
names = [b.decode() for b in ok(M.list('""', "*t&AOk-"), "list mutf7")]
assert names and names[0].endswith('"&AMk-t&AOk-"'), names
ok(M.enable("UTF8=ACCEPT"), "enable")
names = [b.decode() for b in ok(M.list('""', '"*té"'), "list utf8")]
assert names and names[0].endswith('"Été"'), names
ok(M.create('"Grüße"'), "create utf8")
names = [b.decode() for b in ok(M.list('""', '"Gr*"'), "list utf8")]
assert names == ['(\\HasNoChildren) "/" "Grüße"'] or 'Grüße' in names[0], names
typ, data = M.logout()
assert typ == "BYE", (typ, data)

# AUTHENTICATE PLAIN (continuation) and RENAME of INBOX (RFC 9051 6.3.6:
# the messages move, INBOX stays, empty).
M2 = connect()
typ, data = M2.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + password.encode())
assert typ == "OK", (typ, data)
before = int(re.search(rb"MESSAGES (\d+)", ok(M2.status("INBOX", "(MESSAGES)"), "status")[0]).group(1))
assert before >= 1, before
ok(M2.rename("INBOX", "Old-Inbox"), "rename INBOX")
typ, data = M2.select("INBOX")
assert typ == "OK" and data == [b"0"], data
typ, data = M2.status("Old-Inbox", "(MESSAGES)")
assert f"MESSAGES {before}".encode() in data[0], data
M2.logout()
print("ALL OK")
