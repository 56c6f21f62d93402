"""SORT, THREAD (RFC 5256), CONDSTORE and QRESYNC (RFC 7162) through
Python's imaplib, a client we did not write.

usage: imap_sort_sync.py HOST PORT USER PASSWORD
The INBOX holds the five messages of tests/imap_sort.rs (1 "Plans",
2 "Re: Plans", 3 "Lunch", 4 "Re: [team] plans", 5 "Fwd: Lunch").
Asserts as it goes; prints "ALL OK" at the end.
"""
import imaplib
import re
import sys

host, port, user, password = sys.argv[1:5]
for name, states in {"ENABLE": ("AUTH",)}.items():
    imaplib.Commands.setdefault(name, states)

m = imaplib.IMAP4(host, int(port))
m.login(user, password)
caps = m.capabilities
for c in ("SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT",
          "CONDSTORE", "QRESYNC", "ESORT"):
    assert c in caps, (c, caps)

typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"5"], data

# RFC 5256 3: SORT by base subject, ties in sequence order; REVERSE DATE.
typ, data = m.sort("(SUBJECT)", "UTF-8", "ALL")
assert typ == "OK" and data == [b"3 5 1 2 4"], data
typ, data = m.sort("(REVERSE DATE)", "UTF-8", "ALL")
assert data == [b"5 4 2 1 3"], data
typ, data = m.uid("SORT", "(FROM)", "UTF-8", "SUBJECT", "plans")
assert data == [b"2 4 1"], data
# RFC 5957: DISPLAYFROM sorts on the display name.
typ, data = m.sort("(DISPLAYFROM)", "UTF-8", "ALL")
assert data == [b"5 2 3 4 1"], data

# RFC 5256 3: THREAD=REFERENCES and THREAD=ORDEREDSUBJECT.
typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
assert typ == "OK" and data == [b"(3 5)(1 2 4)"], data
typ, data = m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
assert data == [b"(3 5)(1 (2)(4))"], data

# RFC 7162 3.1: CONDSTORE through FETCH MODSEQ and STORE UNCHANGEDSINCE.
typ, data = m.fetch("1:*", "(MODSEQ)")
modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", d).group(1)) for d in data]
assert len(modseqs) == 5, data
typ, data = m.store("1", "+FLAGS", r"(\Flagged)")
new = int(re.search(rb"MODSEQ \((\d+)\)", data[0]).group(1))
assert new > max(modseqs), data
typ, data = m._simple_command(
    "STORE", "1", "(UNCHANGEDSINCE %d)" % modseqs[0], "+FLAGS", r"(\Seen)")
assert typ == "OK", (typ, data)
assert data[0].startswith(b"[MODIFIED 1]"), data
typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1))
assert highest >= new, data
m.close()
m.logout()

# RFC 7162 3.2.5: another client changes and expunges; this one resyncs.
other = imaplib.IMAP4(host, int(port))
other.login(user, password)
other.select("INBOX")
other.store("2", "+FLAGS", r"($Work)")
other.store("3", "+FLAGS", r"(\Deleted)")
other.expunge()
other.logout()

m = imaplib.IMAP4(host, int(port))
m.login(user, password)
typ, data = m._simple_command("ENABLE", "QRESYNC")
assert typ == "OK", data
typ, data = m.status("INBOX", "(UIDVALIDITY)")
validity = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
typ, data = m._simple_command("SELECT", "INBOX (QRESYNC (%d %d))" % (validity, highest))
assert typ == "OK", (typ, data)
vanished = m.untagged_responses.pop("VANISHED", [])
fetched = m.untagged_responses.pop("FETCH", [])
assert vanished == [b"(EARLIER) 3"], vanished
assert len(fetched) == 1 and b"UID 2 " in fetched[0] and b"$Work" in fetched[0], fetched
m.logout()
print("ALL OK")
