#!/usr/bin/env python3
"""The corpus of bench/fts (issue 27): realistic messages as Maildir++.

    bench/fts-corpus.py DIR MESSAGES FOLDERS SEED [PLANT]

Writes MESSAGES messages spread over FOLDERS folders (INBOX and .F1 ...)
of the Maildir DIR: mixed sizes (about 40 KiB mean), plain text, HTML
beside text, attachments (base64 PDFs and images, file names plain, in
RFC 2231 and in encoded words), several charsets (UTF-8, ISO-8859-1,
windows-1252, quoted-printable and base64 text), encoded-word subjects.
Text is words drawn with a Zipf law from a vocabulary of common English
words and a tail of rarer made-up ones, so trigrams are as common as in
mail. With PLANT=1 (the default): the word WORD ("kaltenbrunner") in
about 50 messages, ABSENT ("zqxvortexian") in none, and the phrase
PHRASE ("project status meeting", three words that are common on their
own) in about 50. Prints "messages bytes" when done. Deterministic for a
seed.
"""

import base64
import os
import quopri
import random
import sys

WORD = "kaltenbrunner"
ABSENT = "zqxvortexian"
PHRASE = "project status meeting"

COMMON = """the of and to a in is it you that he was for on are with as I his they be
at one have this from or had by not word but what some we can out other were all there
when up use your how said an each she which do their time if will way about many then
them write would like so these her long make thing see him two has look more day could
go come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little
only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy
old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self
earth father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real
life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book
carry took science eat room friend began idea fish mountain stop once base hear horse cut
sure watch color face wood main enough plain girl usual young ready above ever red list
though feel talk bird soon body dog family direct pose leave song measure door product
black short numeral class wind question happen complete ship area half rock order fire
south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing
listen six table travel less morning ten simple several vowel toward war lay against
pattern slow center love person money serve appear road map rain rule govern pull cold
notice voice unit power town fine certain fly fall lead cry dark machine note wait plan
figure star box noun field rest correct able pound done beauty drive stood contain front
teach week final gave green oh quick develop ocean warm free minute strong special mind
behind clear tail produce fact street inch multiply nothing course stay wheel full force
blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss
brought heat snow tire bring yes distant fill east paint language among project status
meeting report budget review team please thanks regards attached update schedule client
invoice contract deadline agenda call office manager release server account password
issue support request order delivery shipment payment quarter sales market customer""".split()

ACCENTED = ["café", "crème", "naïve", "résumé", "Köln", "Grüße", "Straße", "señor",
            "año", "façade", "Zürich", "Málaga", "Ålesund", "déjà", "Übersicht"]


def vocabulary(rng):
    words = list(COMMON)
    syll = ["ka", "lo", "mi", "ter", "van", "dor", "sel", "pri", "bra", "nu", "qua", "zen",
            "fo", "ril", "gast", "hem", "cor", "tis", "wel", "ob"]
    seen = set(words)
    while len(words) < 6000:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen and WORD not in w and ABSENT not in w:
            seen.add(w)
            words.append(w)
    weights = [1.0 / (i + 1) ** 1.0 for i in range(len(words))]
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    return words, cum


def text(rng, words, cum, n, accents):
    ws = rng.choices(words, cum_weights=cum, k=n)
    if accents:
        for _ in range(max(1, n // 60)):
            ws[rng.randrange(n)] = rng.choice(ACCENTED)
    lines, line = [], []
    for w in ws:
        line.append(w)
        if len(line) >= rng.randint(8, 14):
            lines.append(" ".join(line))
            line = []
        if rng.random() < 0.01:
            lines.append("")
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def encoded_word(s, charset="utf-8"):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(s.encode(charset)).decode())


def part_text(rng, body, html=False):
    kind = "html" if html else "plain"
    if html:
        paras = body.split("\n\n")
        body = "<html><head><style>p { margin: 0 }</style></head><body>" + "".join(
            "<p>" + p.replace("&", "&amp;").replace("\n", "<br>\n") + "</p>\n" for p in paras
        ) + "</body></html>"
    charset = rng.choice(["utf-8", "utf-8", "iso-8859-1", "windows-1252"])
    try:
        raw = body.encode(charset)
    except UnicodeEncodeError:
        charset, raw = "utf-8", body.encode("utf-8")
    cte = rng.choice(["8bit", "quoted-printable", "quoted-printable", "base64"])
    if cte == "quoted-printable":
        data = quopri.encodestring(raw.replace(b"\n", b"\r\n"))
    elif cte == "base64":
        data = base64.encodebytes(raw.replace(b"\n", b"\r\n"))
    else:
        data = raw
    head = "Content-Type: text/%s; charset=%s\nContent-Transfer-Encoding: %s\n\n" % (kind, charset, cte)
    return head.encode() + data.replace(b"\r\n", b"\n")


def attachment(rng, size):
    name = rng.choice(["Report %d.pdf", "scan-%d.png", "Übersicht %d.pdf", "résumé %d.docx"]) % rng.randint(1, 999)
    ctype = "application/pdf" if name.endswith("pdf") else (
        "image/png" if name.endswith("png") else "application/octet-stream")
    style = rng.randrange(3)
    if style == 0 and name.isascii():
        disp = 'attachment; filename="%s"' % name
        ctn = 'name="%s"' % name
    elif style == 1:
        from urllib.parse import quote
        disp = "attachment; filename*=utf-8''%s" % quote(name)
        ctn = 'name="%s"' % encoded_word(name)
    else:
        disp = 'attachment; filename="%s"' % encoded_word(name)
        ctn = 'name="%s"' % encoded_word(name)
    data = base64.encodebytes(rng.randbytes(size)).decode()
    return ("Content-Type: %s; %s\nContent-Disposition: %s\nContent-Transfer-Encoding: base64\n\n%s"
            % (ctype, ctn, disp, data)).encode()


def message(rng, words, cum, n, plant_word, plant_phrase):
    words_n = max(30, int(rng.lognormvariate(6.3, 0.9)))  # ~550 median, ~800 mean
    body = text(rng, words, cum, words_n, accents=rng.random() < 0.3)
    if plant_word:
        at = rng.randrange(len(body) + 1)
        at = body.rfind(" ", 0, at) + 1
        body = body[:at] + WORD + " " + body[at:]
    if plant_phrase:
        at = rng.randrange(len(body) + 1)
        at = body.rfind(" ", 0, at) + 1
        body = body[:at] + PHRASE + " " + body[at:]
    subject = " ".join(rng.choices(words[:800], k=rng.randint(3, 8)))
    if rng.random() < 0.2:
        subject = encoded_word(subject + " " + rng.choice(ACCENTED), rng.choice(["utf-8", "iso-8859-1"]))
    head = ("From: %s <user%d@example.%s>\nTo: fts@bench.test\nSubject: %s\n"
            "Date: %s\nMessage-ID: <fts.%d.%d@bench.test>\nMIME-Version: 1.0\n"
            % (rng.choice(["Anna Berg", "Jürgen Weiß", "Zoë Martin", "Bob Ng"]), rng.randrange(500),
               rng.choice(["com", "org", "de"]), subject,
               "Mon, %d Jan 2024 %02d:%02d:00 +0100" % (1 + n % 28, n % 24, n % 60), SEED, n))
    kind = rng.random()
    if kind < 0.45:
        return head.encode() + part_text(rng, body)
    if kind < 0.7:
        b = "alt%d" % n
        return (head + 'Content-Type: multipart/alternative; boundary="%s"\n\n' % b).encode() + \
            b"--" + b.encode() + b"\n" + part_text(rng, body) + b"\n--" + b.encode() + b"\n" + \
            part_text(rng, body, html=True) + b"\n--" + b.encode() + b"--\n"
    b = "mix%d" % n
    out = (head + 'Content-Type: multipart/mixed; boundary="%s"\n\n' % b).encode()
    out += b"--" + b.encode() + b"\n" + part_text(rng, body, html=rng.random() < 0.3)
    for _ in range(rng.choice([1, 1, 2])):
        size = min(int(rng.lognormvariate(10.8, 0.9)), 4_000_000)  # ~50 KiB median
        out += b"\n--" + b.encode() + b"\n" + attachment(rng, size)
    return out + b"\n--" + b.encode() + b"--\n"


def main():
    global SEED
    root, count, folders, SEED = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    plant = len(sys.argv) < 6 or sys.argv[5] == "1"
    rng = random.Random(SEED)
    words, cum = vocabulary(random.Random(27))
    chosen = set(rng.sample(range(count), min(50, count))) if plant else set()
    phrased = set(rng.sample(range(count), min(50, count))) if plant else set()
    dirs = []
    for f in range(folders):
        d = root if f == 0 else os.path.join(root, ".F%d" % f)
        for s in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, s), exist_ok=True)
        dirs.append(d)
    total = 0
    for n in range(count):
        m = message(rng, words, cum, n, n in chosen, n in phrased)
        d = dirs[n % folders]
        name = "%d.M%dP%d.fts,S=%d:2,S" % (1700000000 + n, n, SEED, len(m))
        with open(os.path.join(d, "cur", name), "wb") as f:
            f.write(m)
        total += len(m)
    if folders > 1:
        with open(os.path.join(root, "subscriptions"), "w") as f:
            f.write("".join("F%d\n" % i for i in range(1, folders)))
    print(count, total)


SEED = 0
if __name__ == "__main__":
    main()
