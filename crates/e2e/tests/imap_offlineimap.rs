//! offlineimap3 (Debian `offlineimap3`), a client we did not write,
//! syncing a 2,000-message account both ways with a local Maildir on the
//! PostgreSQL topology (two store replicas; offlineimap on gateway A over
//! replica 1, the "other device" on gateway B over replica 2), with flag
//! changes, deletions and new messages on both sides, twice, while another
//! session races it; it ends with the server and the Maildir identical.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Backend, RawImap, TestImap, message, store_with_alice, tagged};

/// Messages in INBOX at the start. Measured on a 2-core machine in a
/// debug build: the first run (2,000 messages to the Maildir) takes 4-9 s,
/// the whole test 13 s; up to 23 s and 46 s while other builds load the
/// machine. Each run's time is printed (`--nocapture`).
const N: u32 = 2000;
/// Messages in a second folder, so offlineimap (maxconnections 2) syncs
/// two folders at once.
const WORK: u32 = 30;

fn config(dir: &Path, port: u16) -> PathBuf {
    let rc = dir.join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = test\nmetadata = {meta}\nfsync = false\n\n\
             [Account test]\nlocalrepository = local\nremoterepository = remote\n\
             synclabels = no\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {mail}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = alice@example.org\nremotepass = pw-alice\nssl = no\nstarttls = no\n\
             maxconnections = 2\n",
            meta = dir.join("meta").display(),
            mail = dir.join("mail").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    rc
}

/// One offlineimap run (`-o`: once); its output. Fails on a non-zero exit
/// or an ERROR it reports (it goes on past some errors).
fn offlineimap(rc: &Path) -> String {
    let start = Instant::now();
    let out = Command::new("offlineimap")
        .arg("-c")
        .arg(rc)
        .args(["-o", "-u", "basic"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "offlineimap does not run ({e}): apt-get install offlineimap3 (scripts/test does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "offlineimap failed:\n{text}");
    assert!(
        !text.contains("ERROR"),
        "offlineimap reported errors:\n{text}"
    );
    eprintln!("offlineimap run: {:.1} s", start.elapsed().as_secs_f64());
    text
}

async fn sync(rc: &Path) -> String {
    let rc = rc.to_path_buf();
    tokio::task::spawn_blocking(move || offlineimap(&rc))
        .await
        .unwrap()
}

/// Message-ID -> system flags, in IMAP spelling, sorted.
type State = BTreeMap<String, Vec<&'static str>>;

/// Maildir flag letters (the Maildir spec) and the IMAP flags offlineimap
/// maps them to.
const LETTERS: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Every message of a Maildir folder: file path, Message-ID, flags.
fn maildir(folder: &Path) -> Vec<(PathBuf, String, Vec<&'static str>)> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for e in rd {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let id = message_id(&data).unwrap_or_else(|| panic!("no Message-ID in {path:?}"));
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let letters = name.split_once(":2,").map(|(_, f)| f).unwrap_or("");
            let mut flags: Vec<&str> = LETTERS
                .iter()
                .filter(|(c, _)| letters.contains(*c))
                .map(|(_, f)| *f)
                .collect();
            flags.sort_unstable();
            out.push((path, id, flags));
        }
    }
    out
}

fn maildir_state(folder: &Path) -> State {
    let mut s = State::new();
    for (path, id, flags) in maildir(folder) {
        assert!(
            s.insert(id.clone(), flags).is_none(),
            "{id} twice in the Maildir ({path:?})"
        );
    }
    s
}

/// The Message-ID header's value, e.g. `msg-0001@remote.example`.
fn message_id(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("Message-ID").then(|| {
            value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// A folder as the server has it, read in a fresh session on gateway B:
/// UID -> (Message-ID, system flags).
async fn server(
    addr: std::net::SocketAddr,
    folder: &str,
) -> BTreeMap<u32, (String, Vec<&'static str>)> {
    let mut s = RawImap::connect(addr).await;
    s.login().await;
    s.ok(&format!("EXAMINE {folder}")).await;
    let r = s
        .ok("UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .await;
    s.cmd("LOGOUT").await;
    let mut out = BTreeMap::new();
    let mut cur: Option<(u32, Vec<&'static str>)> = None;
    for l in &r {
        if l.starts_with("* ") && l.contains(" FETCH (") {
            let uid = l
                .split("UID ")
                .nth(1)
                .and_then(|r| r.split([' ', ')']).next())
                .and_then(|u| u.parse().ok())
                .unwrap_or_else(|| panic!("no UID in {l:?}"));
            let flags_text = l
                .split("FLAGS (")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap_or("");
            let mut flags: Vec<&str> = LETTERS
                .iter()
                .map(|(_, f)| *f)
                .filter(|f| flags_text.split(' ').any(|x| x.eq_ignore_ascii_case(f)))
                .collect();
            flags.sort_unstable();
            cur = Some((uid, flags));
        } else if let Some(id) = message_id(l.as_bytes())
            && let Some((uid, flags)) = cur.take()
        {
            out.insert(uid, (id, flags));
        }
    }
    out
}

async fn server_state(addr: std::net::SocketAddr, folder: &str) -> State {
    let mut s = State::new();
    for (uid, (id, flags)) in server(addr, folder).await {
        assert!(
            s.insert(id.clone(), flags).is_none(),
            "{id} twice on the server (UID {uid})"
        );
    }
    s
}

/// The number in `msg-0042@remote.example`.
fn number(id: &str) -> Option<u32> {
    id.strip_prefix("msg-")?.split('@').next()?.parse().ok()
}

/// Changes a local message's flags (renames its file, as a Maildir client
/// does) or deletes it.
fn local_edit(
    folder: &Path,
    pick: impl Fn(u32) -> bool,
    edit: impl Fn(&str) -> Option<String>,
) -> usize {
    let mut n = 0;
    for (path, id, flags) in maildir(folder) {
        if !number(&id).is_some_and(&pick) {
            continue;
        }
        let letters: String = LETTERS
            .iter()
            .filter(|(_, f)| flags.contains(f))
            .map(|(c, _)| *c)
            .collect();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let base = name.split(":2,").next().unwrap().to_string();
        match edit(&letters) {
            Some(new) => {
                std::fs::rename(&path, folder.join("cur").join(format!("{base}:2,{new}"))).unwrap()
            }
            None => std::fs::remove_file(&path).unwrap(),
        }
        n += 1;
    }
    n
}

/// A new message written into a Maildir folder, as a local client would.
fn local_new(folder: &Path, id: &str) {
    std::fs::write(
        folder
            .join("new")
            .join(format!("1700000000.{id}.localhost")),
        message(id, "written locally"),
    )
    .unwrap();
}

/// UIDs on the server of the messages whose number satisfies `pick`.
async fn uids(addr: std::net::SocketAddr, folder: &str, pick: impl Fn(u32) -> bool) -> String {
    let set: Vec<String> = server(addr, folder)
        .await
        .into_iter()
        .filter(|(_, (id, _))| number(id).is_some_and(&pick))
        .map(|(uid, _)| uid.to_string())
        .collect();
    assert!(!set.is_empty());
    set.join(",")
}

/// APPENDs `count` messages numbered from `first` to `folder`, 250 to a
/// MULTIAPPEND command (RFC 3502).
async fn append_many(s: &mut RawImap, folder: &str, first: u32, count: u32) {
    let ids: Vec<u32> = (first..first + count).collect();
    for chunk in ids.chunks(250) {
        let mut c = format!("APPEND {folder}");
        for i in chunk {
            let m =
                String::from_utf8(message(&format!("msg-{i:04}"), &format!("body {i}"))).unwrap();
            c.push_str(&format!(" {{{}+}}\r\n{m}", m.len()));
        }
        s.ok(&c).await;
    }
}

async fn append_one(s: &mut RawImap, folder: &str, id: &str) {
    let m = String::from_utf8(message(id, "appended on the server")).unwrap();
    s.ok(&format!("APPEND {folder} {{{}+}}\r\n{m}", m.len()))
        .await;
}

/// Asserts the server and the Maildir hold the same messages with the
/// same flags in every folder; returns INBOX's state.
async fn assert_identical(b: std::net::SocketAddr, mail: &Path) -> State {
    let mut inbox = State::new();
    for folder in ["INBOX", "Work"] {
        let remote = server_state(b, folder).await;
        let local = maildir_state(&mail.join(folder));
        if remote != local {
            let only_remote: Vec<_> = remote
                .iter()
                .filter(|(k, v)| local.get(*k) != Some(v))
                .take(10)
                .collect();
            let only_local: Vec<_> = local
                .iter()
                .filter(|(k, v)| remote.get(*k) != Some(v))
                .take(10)
                .collect();
            panic!(
                "{folder}: server ({}) and Maildir ({}) differ; server side: {only_remote:?}; \
                 Maildir side: {only_local:?}",
                remote.len(),
                local.len()
            );
        }
        if folder == "INBOX" {
            inbox = remote;
        }
    }
    inbox
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offlineimap_two_way_sync_of_2000_messages() {
    let started = Instant::now();
    let (store, _client) = store_with_alice(Backend::Postgres).await;
    let replica = store.replica().await;
    let gw_a = TestImap::start(&store.uri()).await;
    let gw_b = TestImap::start(&replica.uri()).await;
    let b = gw_b.imap;
    let mut other = RawImap::connect(b).await;
    other.login().await;
    other.ok("CREATE Work").await;
    append_many(&mut other, "INBOX", 1, N).await;
    append_many(&mut other, "Work", 5001, WORK).await;
    eprintln!(
        "{N} messages appended: {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let rc = config(dir.path(), gw_a.imap.port());
    let mail = dir.path().join("mail");
    let (inbox, work) = (mail.join("INBOX"), mail.join("Work"));

    // 1. Server -> Maildir.
    sync(&rc).await;
    let state = assert_identical(b, &mail).await;
    assert_eq!(state.len(), N as usize);

    // 2. Round one. Maildir: flag every 10th (n % 10 == 1), delete n % 50
    // == 2, a new message. Server (the other device, on gateway B): seen
    // and answered for n % 10 == 3, expunge n % 50 == 4, a new message.
    let flagged = local_edit(&inbox, |n| n % 10 == 1, |f| Some(format!("F{f}")));
    let deleted = local_edit(&inbox, |n| n % 50 == 2, |_| None);
    assert_eq!((flagged, deleted), (200, 40));
    local_new(&inbox, "local-1");
    local_edit(&work, |n| n == 5001, |_| None);
    other.ok("SELECT INBOX").await;
    let set = uids(b, "INBOX", |n| n % 10 == 3).await;
    other
        .ok(&format!(
            "UID STORE {set} +FLAGS.SILENT (\\Seen \\Answered)"
        ))
        .await;
    let set = uids(b, "INBOX", |n| n % 50 == 4).await;
    other
        .ok(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
        .await;
    other.ok(&format!("UID EXPUNGE {set}")).await;
    append_one(&mut other, "INBOX", "server-1").await;
    append_one(&mut other, "Work", "server-work-1").await;

    // While offlineimap syncs round one, the other device races it: it
    // marks n % 10 == 5 as drafts, and n % 50 == 2 (which offlineimap is
    // deleting from the server) too, and sets a keyword on every message
    // by sequence number. No command may fail (RFC 2180 4.2:
    // STORE on messages expunged meanwhile is OK).
    let racing_5 = uids(b, "INBOX", |n| n % 10 == 5).await;
    let racing_2 = uids(b, "INBOX", |n| n % 50 == 2).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let race = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut rounds = 0;
        while rounds == 0 || !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            for set in [&racing_5, &racing_2] {
                let r = other
                    .cmd(&format!("UID STORE {set} +FLAGS.SILENT (\\Draft)"))
                    .await;
                if !tagged(&r).contains(" OK") {
                    failures.push(tagged(&r).to_string());
                }
            }
            // By sequence number, over every message, some of which
            // offlineimap has just expunged in its own session: a keyword
            // (offlineimap leaves keywords alone here).
            let r = other.cmd("STORE 1:* +FLAGS.SILENT ($Race)").await;
            if !tagged(&r).contains(" OK") {
                failures.push(tagged(&r).to_string());
            }
            let r = other.cmd("NOOP").await;
            if !tagged(&r).contains(" OK") {
                failures.push(tagged(&r).to_string());
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("racing session: {rounds} rounds");
        (other, failures)
    });
    sync(&rc).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut other, failures) = race.await.unwrap();
    assert!(failures.is_empty(), "the racing session got: {failures:?}");
    // The racing changes reach the Maildir in the next run.
    sync(&rc).await;
    let state = assert_identical(b, &mail).await;
    assert_eq!(state.len(), (N - 40 - 40 + 2) as usize);

    // 3. Round two. Maildir: clear \Seen on n % 10 == 3, delete n % 50 ==
    // 6, a new message. Server: clear \Flagged on n % 10 == 1 (set by the
    // Maildir in round one), expunge n % 50 == 8, a new message.
    let unseen = local_edit(&inbox, |n| n % 10 == 3, |f| Some(f.replace('S', "")));
    assert_eq!(unseen, 200);
    assert_eq!(local_edit(&inbox, |n| n % 50 == 6, |_| None), 40);
    local_new(&inbox, "local-2");
    other.ok("SELECT INBOX").await;
    let set = uids(b, "INBOX", |n| n % 10 == 1).await;
    other
        .ok(&format!("UID STORE {set} -FLAGS.SILENT (\\Flagged)"))
        .await;
    let set = uids(b, "INBOX", |n| n % 50 == 8).await;
    other
        .ok(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
        .await;
    other.ok(&format!("UID EXPUNGE {set}")).await;
    append_one(&mut other, "INBOX", "server-2").await;
    sync(&rc).await;
    let state = assert_identical(b, &mail).await;

    // What each side did, as it ended.
    assert_eq!(
        state.len(),
        (N - 4 * 40 + 4) as usize,
        "deletions and new messages"
    );
    for id in ["local-1", "local-2", "server-1", "server-2"] {
        assert!(
            state.contains_key(&format!("{id}@remote.example")),
            "{id} missing"
        );
    }
    for (id, flags) in &state {
        let Some(n) = number(id) else { continue };
        let want: &[&str] = match n % 10 {
            1 => &[],
            3 => &["\\Answered"],
            5 => &["\\Draft"],
            _ => &[],
        };
        assert_eq!(flags, want, "{id}");
        assert!(![2, 4, 6, 8].contains(&(n % 50)), "{id} was deleted");
    }
    // The bytes too (line ends aside: a Maildir may keep LF): every 100th
    // message and the new ones, the server's copy against the file.
    let files: BTreeMap<String, PathBuf> = maildir(&inbox)
        .into_iter()
        .map(|(path, id, _)| (id, path))
        .collect();
    let mut s = RawImap::connect(b).await;
    s.login().await;
    s.ok("EXAMINE INBOX").await;
    let mut compared = 0;
    for (uid, (id, _)) in server(b, "INBOX").await {
        if number(&id).is_some_and(|n| n % 100 != 7) {
            continue;
        }
        let r = s.ok(&format!("UID FETCH {uid} BODY.PEEK[]")).await;
        let body: String = r[1..r.len() - 2].concat();
        let want = std::fs::read_to_string(&files[&id]).unwrap();
        assert_eq!(
            body.replace("\r\n", "\n").trim_end(),
            want.replace("\r\n", "\n").trim_end(),
            "{id}"
        );
        compared += 1;
    }
    assert_eq!(compared, 20 + 4);
    let work_state = server_state(b, "Work").await;
    assert_eq!(work_state.len(), WORK as usize);
    assert!(work_state.contains_key("server-work-1@remote.example"));
    eprintln!("total: {:.1} s", started.elapsed().as_secs_f64());
}
