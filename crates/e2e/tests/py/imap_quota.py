"""QUOTA (RFC 9208) through Python's imaplib, a client we did not write.

usage: imap_quota.py HOST PORT USER PASSWORD USED_KIB LIMIT_KIB
Prints "ALL OK" at the end.
"""
import imaplib
import sys

host, port, user, password, used, limit = sys.argv[1:7]
m = imaplib.IMAP4(host, int(port))
m.login(user, password)
assert "QUOTA" in m.capabilities, m.capabilities
typ, data = m.getquotaroot("INBOX")
assert typ == "OK", (typ, data)
roots, quotas = data
assert roots == [b'"INBOX" ""'], roots
want = ('"" (STORAGE %s %s)' % (used, limit)).encode()
assert quotas == [want], quotas
typ, data = m.getquota('""')
assert typ == "OK" and data == [want], data
typ, data = m.setquota('""', "(STORAGE 1)")
assert typ == "NO", (typ, data)
m.logout()
print("ALL OK")
