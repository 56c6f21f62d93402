"""TOP of a large message through Python's poplib, a client we did not
write: the header and the first N lines of its body, for N from 0 to
past its end, each compared with the lines of the message file.

usage: pop3_top_large.py HOST PORT USER PASSWORD MESSAGE_FILE
Prints "ALL OK" at the end.
"""
import poplib
import sys

host, port, user, password, path = sys.argv[1:6]
msg = open(path, "rb").read()
head, body = msg.split(b"\r\n\r\n", 1)
head_lines = head.split(b"\r\n") + [b""]
body_lines = body.split(b"\r\n")
if body_lines[-1] == b"":
    body_lines.pop()
p = poplib.POP3(host, int(port), timeout=60)
p.user(user)
p.pass_(password)
count, _ = p.stat()
assert count == 1, count
for n in [0, 1, 100, 3000, 20000, len(body_lines) - 1, len(body_lines), len(body_lines) + 50]:
    resp, lines, _ = p.top(1, n)
    assert resp.startswith(b"+OK"), resp
    want = head_lines + body_lines[:n]
    assert lines == want, (n, len(lines), len(want))
resp, lines, _ = p.retr(1)
assert lines == head_lines + body_lines, (len(lines), len(head_lines) + len(body_lines))
p.quit()
print("ALL OK")
