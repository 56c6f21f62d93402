#!/usr/bin/env python3
"""`mailctl import` / `mailctl export` against a real Dovecot (Debian's
dovecot-imapd), driven by Python's imaplib, a client we did not write.

Dovecot runs from a config of its own on a free loopback port (never the
system service). It holds two source accounts filled over IMAP APPEND: one
in Maildir++ (several hundred messages in nested, special-use, non-ASCII and
subscribed folders, with flags, keywords, internal dates in several zones,
duplicates, messages without Message-ID, a 1.5 MB one, "From " body lines)
and one in mbox. Then, against `mailctl up` on its own data directory:

1. IMAP import, killed (SIGKILL) part-way, run again, run a third time:
   everything arrives byte-exact with the same flags, keywords, internal
   dates, folders, special use and subscriptions, nothing is duplicated,
   and the third run copies nothing.
2. The same through a Dovecot master user (SASL PLAIN authzid).
3. Maildir import straight from Dovecot's files, mbox import from Dovecot's
   mbox files: each compared with what Dovecot serves over IMAP.
4. Export to Maildir and to mbox, imported again into fresh accounts:
   equal to the account they came from.

Usage: import_dovecot.py MAILCTL_BINARY   (exits non-zero on any failure)
"""

import datetime
import imaplib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MAILCTL = sys.argv[1] if len(sys.argv) > 1 else None
ROOT = tempfile.mkdtemp(prefix="import-dovecot-")
os.chmod(ROOT, 0o755)
PROCS = []


def fail(msg):
    print("FAIL:", msg, flush=True)
    raise SystemExit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    fail(f"{what} did not listen on {port}")


# ------------------------------------------------------------------ Dovecot

def start_dovecot():
    if not shutil.which("dovecot"):
        fail("dovecot is not installed (apt-get install dovecot-imapd; scripts/test does it as root)")
    d = os.path.join(ROOT, "dovecot")
    for sub in ("run", "mail", "mbox", "home"):
        os.makedirs(os.path.join(d, sub))
    os.chmod(d, 0o755)
    port, tls_port = free_port(), free_port()
    # A self-signed certificate for localhost/127.0.0.1, made by `mailctl init`.
    tls = os.path.join(d, "tls")
    r = subprocess.run([MAILCTL, "init", "--tls-dir", tls, "--secret-file", os.path.join(d, "unused.secret"),
                        "--hostname", "localhost"], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"mailctl init: {r.stdout}{r.stderr}")
    if os.getuid() == 0:
        user = "mail"
        extra = "first_valid_uid = 1\nmail_uid = mail\nmail_gid = mail\n"
        subprocess.run(["chown", "-R", "mail:mail", os.path.join(d, "mail"),
                        os.path.join(d, "mbox"), os.path.join(d, "home")], check=True)
    else:
        # Unprivileged: every process as this user, no chroot.
        user = pwd.getpwuid(os.getuid()).pw_name
        extra = (f"default_internal_user = {user}\ndefault_login_user = {user}\n"
                 f"first_valid_uid = {os.getuid()}\n"
                 "service anvil {\n  chroot =\n}\nservice imap-login {\n  chroot =\n}\n")
    pw = pwd.getpwnam(user)
    ids = f"{pw.pw_uid}:{pw.pw_gid}"
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write(f"src@example.test:{{PLAIN}}src-pw:{ids}::{d}/home/src::\n")
        f.write(f"mb@example.test:{{PLAIN}}mb-pw:{ids}::{d}/home/mb::"
                f"userdb_mail=mbox:{d}/mbox/%n:INBOX={d}/mbox/%n/inbox\n")
        # Serves what `mailctl export --format maildir` wrote.
        f.write(f"exp@example.test:{{PLAIN}}exp-pw:{ids}::{d}/home/exp::\n")
    with open(os.path.join(d, "masters"), "w") as f:
        f.write("master:{PLAIN}master-pw\n")
    os.chmod(os.path.join(d, "passwd"), 0o644)
    os.chmod(os.path.join(d, "masters"), 0o644)
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{tls}/tls.crt
ssl_key = <{tls}/tls.key
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
mail_location = maildir:{d}/mail/%n
{extra}
namespace inbox {{
  inbox = yes
  separator = .
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Archive {{
    special_use = \\Archive
  }}
}}
passdb {{
  driver = passwd-file
  master = yes
  args = {d}/masters
}}
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
""")
    subprocess.run(["dovecot", "-c", conf], check=True)
    PROCS.append(("dovecot", conf))
    wait_port(port, "dovecot")
    wait_port(tls_port, "dovecot (imaps)")
    return d, port, tls_port


def stop_all():
    for kind, p in PROCS:
        if kind == "dovecot":
            subprocess.run(["doveadm", "-c", p, "stop"], stderr=subprocess.DEVNULL)
        else:
            p.kill()
            p.wait()


# ------------------------------------------------------------------ messages

ZONES = ["+0000", "+0200", "-0500", "+0530", "-0800"]
KEYWORDS = ["$Forwarded", "work", "$Label1", "NonJunk", "urgent"]


def message(rng, n, folder, big=False, with_id=True):
    lines = [
        f"From: Sender {n} <sender{n % 7}@remote.example>",
        f"To: user@example.test",
        f"Subject: {folder} message {n} =?utf-8?q?caf=C3=A9?=",
        f"Date: Mon, {1 + n % 28} Jan 2024 10:{n % 60:02d}:00 +0100",
    ]
    if with_id:
        lines.append(f"Message-ID: <{folder.replace('/', '.')}-{n}@remote.example>")
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", ""]
    body = [f"Line {i} of message {n} in {folder}." for i in range(rng.randint(1, 60))]
    body += ["From the start of a line, as mbox must escape.", ">From already quoted once.", ""]
    if big:
        body += ["x" * 76] * 20000
    return ("\r\n".join(lines + body) + "\r\n").encode()


def random_flags(rng):
    flags = [f for f in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"] if rng.random() < 0.3]
    flags += [k for k in KEYWORDS if rng.random() < 0.2]
    return "(" + " ".join(flags) + ")"


def random_date(rng):
    t = rng.randint(1577836800, 1793000000)  # 2020 .. 2026
    z = rng.choice(ZONES)
    sign = 1 if z[0] == "+" else -1
    off = sign * (int(z[1:3]) * 3600 + int(z[3:5]) * 60)
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone(datetime.timedelta(seconds=off)))
    return '"' + dt.strftime("%d-%b-%Y %H:%M:%S ") + z + '"'


def login(port, user, pw):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, pw)
    return m


def populate_maildir_user(port):
    rng = random.Random(7)
    m = login(port, "src@example.test", "src-pw")
    # Dovecot's separator here is "."; "Été" goes out in modified UTF-7.
    plan = {"INBOX": 220, "Sent": 40, "Drafts": 8, "Trash": 5, "Archive": 20,
            "Archive.2024": 30, "Lists.rust": 12, "&AMk-t&AOk-": 5, "Junk": 0}
    for name in plan:
        if name != "INBOX":
            typ, _ = m.create(name)
            assert typ == "OK", name
    for name in ["INBOX", "Sent", "Archive.2024", "Lists.rust", "&AMk-t&AOk-"]:
        assert m.subscribe(name)[0] == "OK"
    total = 0
    for name, count in plan.items():
        for n in range(count):
            msg = message(rng, n, name, big=(name == "INBOX" and n == 17), with_id=(n % 37 != 5))
            flags = random_flags(rng)
            date = random_date(rng)
            assert m.append(name, flags, date, msg)[0] == "OK"
            total += 1
            if name == "INBOX" and n % 50 == 3:
                # The same message twice: two copies must arrive.
                assert m.append(name, flags, date, msg)[0] == "OK"
                total += 1
    m.logout()
    return total


def populate_mbox_user(port):
    rng = random.Random(11)
    m = login(port, "mb@example.test", "mb-pw")
    plan = {"INBOX": 30, "Sent": 6, "Archive.2024": 10}
    for name in plan:
        if name != "INBOX":
            assert m.create(name)[0] == "OK", name
    assert m.subscribe("Archive.2024")[0] == "OK"
    for name, count in plan.items():
        for n in range(count):
            assert m.append(name, random_flags(rng), random_date(rng), message(rng, n, name))[0] == "OK"
    m.logout()


# ------------------------------------------------------------------ reading an account

LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<d>.)"|NIL) (?P<name>.+)$')


def folders(m):
    typ, data = m.list('""', "*")
    assert typ == "OK", data
    out = {}
    for line in data:
        mo = LIST_RE.match(line)
        assert mo, line
        name = mo.group("name").decode()
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        delim = mo.group("d").decode() if mo.group("d") else "/"
        canon = "/".join(name.split(delim))
        attrs = mo.group("attrs").decode().lower().split()
        out[canon] = (name, attrs)
    return out


def special_use(attrs):
    uses = {"\\sent", "\\drafts", "\\trash", "\\junk", "\\archive", "\\all", "\\flagged"}
    return sorted(a for a in attrs if a in uses)


def subscribed(m, delim_of):
    typ, data = m.lsub('""', "*")
    assert typ == "OK"
    out = set()
    for line in data:
        mo = LIST_RE.match(line)
        name = mo.group("name").decode().strip('"')
        d = mo.group("d").decode() if mo.group("d") else "/"
        out.add("/".join(name.split(d)))
    return out


def messages(m, wire_name):
    typ, data = m.select('"' + wire_name + '"', readonly=True)
    assert typ == "OK", (wire_name, data)
    if int(data[0]) == 0:
        return []
    typ, meta = m.uid("FETCH", "1:*", "(FLAGS INTERNALDATE)")
    assert typ == "OK"
    info = {}
    for line in meta:
        if isinstance(line, tuple):
            line = line[0]
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split()
        flags = tuple(sorted(f.lower() for f in flags if f.lower() != "\\recent"))
        date = re.search(rb'INTERNALDATE "([^"]+)"', line).group(1).decode()
        ts = int(datetime.datetime.strptime(date, "%d-%b-%Y %H:%M:%S %z").timestamp())
        info[uid] = (flags, ts)
    typ, bodies = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    out = []
    for item in bodies:
        if not isinstance(item, tuple):
            continue
        uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
        out.append(info[uid] + (item[1],))
    assert len(out) == len(info), (wire_name, len(out), len(info))
    return out


def snapshot(port, user, pw):
    """Everything a client sees of an account, keyed by canonical name."""
    m = login(port, user, pw)
    fl = folders(m)
    snap = {"folders": {}, "subscribed": subscribed(m, None), "messages": {}}
    for canon, (wire, attrs) in fl.items():
        canon = "INBOX" if canon.upper() == "INBOX" else canon
        selectable = "\\noselect" not in attrs and "\\nonexistent" not in attrs
        snap["folders"][canon] = (selectable, special_use(attrs))
        if selectable:
            snap["messages"][canon] = sorted(messages(m, wire))
    m.logout()
    return snap


def bytes_diff(a, b):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"sizes {len(a)}/{len(b)}, from byte {i}: {a[max(0, i - 40):i + 40]!r} vs {b[max(0, i - 40):i + 40]!r}"


def compare(src, dst, what, dates=True, special=True):
    """Every source folder and message is in the target, and nothing else
    (the target may have extra empty folders of its own)."""
    for name, (selectable, uses) in src["folders"].items():
        if name not in dst["folders"]:
            fail(f"{what}: folder {name!r} missing; target has {sorted(dst['folders'])}")
        if selectable and special and uses != dst["folders"][name][1]:
            fail(f"{what}: {name}: special use {uses} became {dst['folders'][name][1]}")
    for name, msgs in src["messages"].items():
        theirs = dst["messages"].get(name, [])
        if not dates:
            msgs = sorted((f, 0, b) for f, _, b in msgs)
            theirs = sorted((f, 0, b) for f, _, b in theirs)
        if msgs != theirs:
            a, b = len(msgs), len(theirs)
            by_body = {m[2]: m[:2] for m in theirs}
            for m in msgs:
                if m[2] in by_body and by_body[m[2]] != m[:2]:
                    fail(f"{what}: {name}: a message has {by_body[m[2]]} instead of {m[:2]}")
            diff = next(((x[:2], y[:2], bytes_diff(x[2], y[2])) for x, y in zip(msgs, theirs)
                         if x != y), None)
            fail(f"{what}: {name}: {a} source messages vs {b} in the target; first difference {diff}")
    for name, msgs in dst["messages"].items():
        if name not in src["messages"] and msgs:
            fail(f"{what}: unexpected messages in {name}")
    missing_subs = {s for s in src["subscribed"] if s in src["folders"]} - dst["subscribed"]
    if missing_subs:
        fail(f"{what}: subscriptions lost: {missing_subs}")
    n = sum(len(v) for v in src["messages"].values())
    print(f"ok: {what}: {len(src['folders'])} folders, {n} messages equal", flush=True)


# ------------------------------------------------------------------ our system

def mailctl(data, *args, stdin=None, check=True):
    r = subprocess.run([MAILCTL, "--data-dir", data, *args], input=stdin, capture_output=True,
                       text=True, env={k: v for k, v in os.environ.items()
                                       if k not in ("MAILCTL_STORE", "MAILCTL_SECRET_FILE")})
    if check and r.returncode != 0:
        fail(f"mailctl {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def start_up():
    data = os.path.join(ROOT, "data")
    args = [MAILCTL, "--data-dir", data, "up"]
    for flag in ["--store-listen", "--smtp-listen", "--lmtp-listen", "--pop3-listen",
                 "--pop3s-listen", "--imap-listen", "--imaps-listen"]:
        args += [flag, "127.0.0.1:0"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    PROCS.append(("up", p))
    imap = None
    for line in p.stdout:
        if line.startswith("IMAP:"):
            imap = int(line.split()[1].rsplit(":", 1)[1])
        if line.startswith("ready"):
            break
    if imap is None:
        fail("mailctl up printed no IMAP address")
    return data, imap


def status_messages(port, user, pw, folder):
    m = login(port, user, pw)
    typ, data = m.status(folder, "(MESSAGES)")
    m.logout()
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def main():
    dv, dport, dtls = start_dovecot()
    ca = os.path.join(dv, "tls", "tls.crt")
    t = time.time()
    n_src = populate_maildir_user(dport)
    populate_mbox_user(dport)
    print(f"dovecot: {n_src} messages appended in {time.time() - t:.1f} s", flush=True)
    src = snapshot(dport, "src@example.test", "src-pw")
    mb = snapshot(dport, "mb@example.test", "mb-pw")
    assert "Archive/2024" in src["folders"] and "Lists/rust" in src["folders"], src["folders"].keys()
    assert not src["folders"]["Lists"][0], "Lists is a \\Noselect parent on Dovecot"

    data, port = start_up()
    mailctl(data, "domain", "add", "example.org")
    accounts = ["imap", "master", "maildir", "mbox", "rt-maildir", "rt-mbox", "tls"]
    for a in accounts:
        mailctl(data, "account", "add", f"{a}@example.org", stdin="pw\n")

    # 1. IMAP import, killed part-way.
    url = f"imap://127.0.0.1:{dport}"
    cmd = [MAILCTL, "--data-dir", data, "import", "imap", url, "--ca-file", ca, "--user",
           "src@example.test", "--to", "imap@example.org"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(b"src-pw\n")
    p.stdin.close()
    end = time.time() + 60
    while time.time() < end and p.poll() is None:
        if status_messages(port, "imap@example.org", "pw", "INBOX") >= 40:
            break
        time.sleep(0.02)
    if p.poll() is not None:
        fail(f"the import ended before it could be interrupted: {p.communicate()}")
    p.send_signal(signal.SIGKILL)
    p.wait()
    part = status_messages(port, "imap@example.org", "pw", "INBOX")
    if part >= len(src["messages"]["INBOX"]):
        fail("the interrupted import had already finished INBOX")
    print(f"ok: interrupted with {part} messages in INBOX", flush=True)
    t = time.time()
    r = mailctl(data, "import", "imap", url, "--ca-file", ca, "--user", "src@example.test", "--to", "imap@example.org",
                stdin="src-pw\n")
    took = time.time() - t
    print(r.stdout, end="")
    if "INCOMPLETE" in r.stdout or "INBOX: " not in r.stdout:
        fail(f"second run: {r.stdout}{r.stderr}")
    compare(src, snapshot(port, "imap@example.org", "pw"), "imap import after an interruption")
    r = mailctl(data, "import", "imap", url, "--ca-file", ca, "--user", "src@example.test", "--to", "imap@example.org",
                stdin="src-pw\n")
    copied = [int(x) for x in re.findall(r"(\d+) copied", r.stdout)]
    if not copied or any(copied):
        fail(f"a third run copied messages again: {r.stdout}")
    compare(src, snapshot(port, "imap@example.org", "pw"), "imap import run three times")
    print(f"ok: rerun copies nothing; second run {took:.1f} s", flush=True)

    # 2. A Dovecot master user.
    mailctl(data, "import", "imap", url, "--ca-file", ca, "--user", "src@example.test", "--master-user", "master",
            "--to", "master@example.org", stdin="master-pw\n")
    compare(src, snapshot(port, "master@example.org", "pw"), "imap import as a master user")
    bad = mailctl(data, "import", "imap", url, "--ca-file", ca, "--user", "src@example.test", "--to",
                  "master@example.org", stdin="wrong\n", check=False)
    if bad.returncode == 0 or "logging in" not in bad.stderr:
        fail(f"a wrong source password: {bad.returncode} {bad.stderr}")

    # STARTTLS happened (Dovecot offers it; a login over TLS is logged so).
    log = open(os.path.join(dv, "dovecot.log"), errors="replace").read()
    if not re.search(r"imap-login: Info: Login: user=<src@example.test>.*TLS", log):
        fail("no import login over STARTTLS in Dovecot's log")
    # imaps://: refused without a trusted certificate, fine with it.
    turl = f"imaps://127.0.0.1:{dtls}"
    r = mailctl(data, "import", "imap", turl, "--user", "src@example.test", "--to", "tls@example.org",
                stdin="src-pw\n", check=False)
    if r.returncode == 0 or "TLS" not in r.stderr:
        fail(f"an untrusted certificate was accepted: {r.returncode} {r.stderr}")
    if status_messages(port, "tls@example.org", "pw", "INBOX") != 0:
        fail("messages arrived over an untrusted connection")
    mailctl(data, "import", "imap", turl, "--ca-file", ca, "--user", "src@example.test",
            "--to", "tls@example.org", stdin="src-pw\n")
    compare(src, snapshot(port, "tls@example.org", "pw"), "imaps import")

    # 3. Dovecot's own files.
    mailctl(data, "import", "maildir", os.path.join(dv, "mail", "src"), "--to", "maildir@example.org")
    compare(src, snapshot(port, "maildir@example.org", "pw"), "maildir import from Dovecot's files")
    r = mailctl(data, "import", "maildir", os.path.join(dv, "mail", "src"), "--to", "maildir@example.org")
    if any(int(x) for x in re.findall(r"(\d+) copied", r.stdout)):
        fail(f"maildir rerun copied messages: {r.stdout}")
    mailctl(data, "import", "mbox", os.path.join(dv, "mbox", "mb"), "--to", "mbox@example.org")
    compare(mb, snapshot(port, "mbox@example.org", "pw"), "mbox import from Dovecot's files",
            special=False)
    r = mailctl(data, "import", "mbox", os.path.join(dv, "mbox", "mb"), "--to", "mbox@example.org")
    if any(int(x) for x in re.findall(r"(\d+) copied", r.stdout)):
        fail(f"mbox rerun copied messages: {r.stdout}")

    # 4. Export and back.
    ours = snapshot(port, "imap@example.org", "pw")
    out = os.path.join(ROOT, "export-maildir")
    mailctl(data, "export", "imap@example.org", "--format", "maildir", "--out", out)
    mailctl(data, "import", "maildir", out, "--to", "rt-maildir@example.org")
    compare(ours, snapshot(port, "rt-maildir@example.org", "pw"), "maildir export round trip")
    # Dovecot itself reads the exported Maildir (sizes in the file names,
    # keywords, subscriptions, dates) and serves the same account.
    shutil.copytree(out, os.path.join(dv, "mail", "exp"))
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", "mail:mail", os.path.join(dv, "mail", "exp")], check=True)
    compare(ours, snapshot(dport, "exp@example.test", "exp-pw"), "maildir export served by Dovecot")
    out = os.path.join(ROOT, "export-mbox")
    mailctl(data, "export", "imap@example.org", "--format", "mbox", "--out", out)
    mailctl(data, "import", "mbox", out, "--to", "rt-mbox@example.org")
    compare(ours, snapshot(port, "rt-mbox@example.org", "pw"), "mbox export round trip")
    print("all import/export checks passed", flush=True)


if __name__ == "__main__":
    ok = False
    try:
        main()
        ok = True
    finally:
        stop_all()
        log = os.path.join(ROOT, "dovecot", "dovecot.log")
        if not ok and os.path.exists(log):
            print("--- dovecot.log (tail)")
            print("".join(open(log, errors="replace").readlines()[-30:]))
        if ok or not os.environ.get("KEEP"):
            shutil.rmtree(ROOT, ignore_errors=True)
        else:
            print("kept", ROOT)
