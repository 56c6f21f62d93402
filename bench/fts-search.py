#!/usr/bin/env python3
"""Times SEARCH BODY / TEXT on one IMAP server for bench/fts (issue 27).

    bench/fts-search.py HOST:PORT USER PASSWORD LABEL ROUNDS FOLDERS

For each search string (a word in about 50 messages, a word in none, a
three-word phrase; bench/fts-corpus.py plants them) and each key (BODY,
TEXT): ROUNDS timed `UID SEARCH` in INBOX (EXAMINEd once, untimed) and
ROUNDS timed searches over all FOLDERS folders: `ESEARCH IN (PERSONAL)
RETURN (ALL)` (RFC 7377) when the server announces MULTISEARCH, else
EXAMINE + UID SEARCH in each folder, timed together (the line says
which). One untimed round first (caches, a lazily built index). Times run
from sending the command to its tagged reply (imaplib, one connection).
Prints one line per measurement: LABEL SCOPE KEY STRING p50 p90 hits.
"""

import imaplib
import sys
import time

STRINGS = [("word50", "kaltenbrunner"), ("absent", "zqxvortexian"), ("phrase", "project status meeting")]
imaplib.Commands.setdefault("ESEARCH", ("AUTH", "SELECTED"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed(fn, rounds):
    fn()
    out, hits = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        hits = fn()
        out.append((time.perf_counter() - t) * 1000)
    return out, hits


def main():
    addr, user, password, label, rounds, folders = sys.argv[1:7]
    host, port = addr.rsplit(":", 1)
    rounds, folders = int(rounds), int(folders)
    m = imaplib.IMAP4(host, int(port))
    m.login(user, password)
    caps = m.capabilities
    names = ["INBOX"] + ["F%d" % i for i in range(1, folders)]
    multi = "MULTISEARCH" in caps

    def one(key, s):
        def run():
            typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", key, '"%s"' % s)
            assert typ == "OK", data
            return len(data[0].split()) if data and data[0] else 0
        return run

    def every(key, s):
        if multi:
            def run():
                typ, data = m._simple_command("ESEARCH", "IN", "(PERSONAL)", "RETURN", "(ALL)",
                                              "CHARSET", "UTF-8", key, '"%s"' % s)
                assert typ == "OK", data
                _, found = m._untagged_response(typ, data, "ESEARCH")
                hits = 0
                for line in found or []:
                    if line and b" ALL " in line:
                        for r in line.split(b" ALL ", 1)[1].split(b","):
                            a, _, b = r.partition(b":")
                            hits += (int(b) - int(a) + 1) if b else 1
                return hits
            return run

        def run():
            hits = 0
            for f in names:
                typ, data = m.select(f, readonly=True)
                assert typ == "OK", data
                typ, data = m.uid("SEARCH", "CHARSET", "UTF-8", key, '"%s"' % s)
                assert typ == "OK", data
                hits += len(data[0].split()) if data and data[0] else 0
            return hits
        return run

    how = "ESEARCH IN (PERSONAL)" if multi else "%dx EXAMINE+UID SEARCH (no MULTISEARCH)" % folders
    for name, s in STRINGS:
        for key in ("BODY", "TEXT"):
            m.select("INBOX", readonly=True)
            xs, hits = timed(one(key, s), rounds)
            print("%s INBOX %s %s p50 %.1f ms p90 %.1f ms hits %d" % (label, key, name, pct(xs, 50), pct(xs, 90), hits))
            xs, hits = timed(every(key, s), rounds)
            print("%s all-%d %s %s p50 %.1f ms p90 %.1f ms hits %d [%s]"
                  % (label, folders, key, name, pct(xs, 50), pct(xs, 90), hits, how), flush=True)
    m.logout()


if __name__ == "__main__":
    main()
