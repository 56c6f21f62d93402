//! NeoMutt (Debian `neomutt`), a client we did not write, driven through
//! tmux (send-keys, capture-pane) on the PostgreSQL topology: NeoMutt on
//! gateway A over store replica 1, another session on gateway B over
//! replica 2 changing the mailbox under it. It opens the INBOX over plain
//! IMAP (127.0.0.1 is a trusted network), reads a message, flags it, moves
//! one to another folder, deletes another and syncs (expunge); each step is
//! checked on the screen, then the server state over IMAP. Waits are hang
//! guards (poll the screen, up to 30 s), never timing assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Backend, RawImap, TestImap, message, store_with_alice};

/// A tmux server of this test's own (its own socket name), killed on
/// drop; NeoMutt runs in its one window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux does not run ({e}): apt-get install tmux"))
    }

    fn start(rc: &Path) -> Self {
        let neomutt = Command::new("neomutt").arg("-v").output();
        assert!(
            neomutt.is_ok_and(|o| o.status.success()),
            "neomutt does not run: apt-get install neomutt (scripts/test does)"
        );
        let t = Tmux {
            socket: format!("mail-e2e-{}", uuid::Uuid::new_v4().simple()),
        };
        let cmd = format!("neomutt -n -F {}", rc.display());
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "mutt",
            "-x",
            "160",
            "-y",
            "40",
            "-e",
            "TERM=screen",
            &cmd,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t
    }

    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "mutt"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", "mutt", "-l", text]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Presses keys by tmux name (`Enter`, `Escape`).
    fn key(&self, key: &str) {
        let out = self.tmux(&["send-keys", "-t", "mutt", key]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Polls the screen until `ok` holds (a hang guard of 30 s); the screen.
    async fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            // NeoMutt tells a failed command (a NO or BAD, a lost
            // connection) on its message line.
            assert!(
                !s.contains("rror") && !s.contains("failed"),
                "NeoMutt reports an error while waiting for {what}:\n{s}"
            );
            if ok(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "NeoMutt's screen never showed {what}:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index line of the message whose subject is `test {id}`.
    fn line_of(screen: &str, id: &str) -> Option<String> {
        let want = format!("test {id}");
        screen
            .lines()
            .find(|l| l.contains(&want) && !l.contains("Search for"))
            .map(str::to_string)
    }

    /// The status flags (%Z) the index shows for `test {id}`, e.g. `N`,
    /// `!`, `ND`.
    fn flags(screen: &str, id: &str) -> Option<String> {
        let line = Self::line_of(screen, id)?;
        let (_, rest) = line.trim_start().split_once(' ')?;
        Some(rest.split("test ").next()?.trim().to_string())
    }

    /// Moves the index cursor to the message `test {id}` (a search).
    async fn select(&self, id: &str) {
        self.type_text("/");
        self.wait("the search prompt", |s| s.contains("Search for:"))
            .await;
        self.type_text(&format!("test {id}"));
        self.key("Enter");
        // The cursor's line is drawn in reverse video, which capture-pane
        // does not show: the pager's title tells which message it is.
        self.wait("the search done", |s| !s.contains("Search for:"))
            .await;
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn muttrc(dir: &Path, port: u16) -> std::path::PathBuf {
    let rc = dir.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder = \"imap://alice%40example.org@127.0.0.1:{port}/\"\n\
             set spoolfile = \"+INBOX\"\n\
             set imap_user = \"alice@example.org\"\n\
             set imap_pass = \"pw-alice\"\n\
             set ssl_starttls = no\n\
             set ssl_force_tls = no\n\
             set header_cache = \"\"\n\
             set message_cachedir = \"\"\n\
             set mail_check = 1\n\
             set timeout = 1\n\
             set imap_keepalive = 30\n\
             set sort = subject\n\
             set delete = yes\n\
             set confirmappend = no\n\
             set confirmcreate = no\n\
             set mark_old = no\n\
             set move = no\n\
             set record = \"\"\n\
             set trash = \"\"\n\
             set sleep_time = 0\n\
             set wait_key = no\n\
             set pager_stop = yes\n\
             set beep = no\n\
             set quit = yes\n\
             set abort_unmodified = yes\n\
             set index_format = \"%4C %Z %s\"\n\
             set pager_format = \"PAGER %C/%m %s\"\n\
             set status_format = \"STATUS %f msgs=%m\"\n"
        ),
    )
    .unwrap();
    rc
}

/// A folder's messages on the server (a fresh session on gateway B):
/// (Subject line, FLAGS) per message.
async fn server(addr: std::net::SocketAddr, folder: &str) -> Vec<(String, String)> {
    let mut s = RawImap::connect(addr).await;
    s.login().await;
    s.ok(&format!("EXAMINE {folder}")).await;
    let r = s
        .ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    s.cmd("LOGOUT").await;
    let mut out = Vec::new();
    let mut flags = None;
    for l in &r {
        if l.starts_with("* ") && l.contains(" FETCH (") {
            flags = l
                .split("FLAGS (")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .map(str::to_string);
        } else if let Some(subject) = l.strip_prefix("Subject: ")
            && let Some(f) = flags.take()
        {
            out.push((subject.trim_end().to_string(), f));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neomutt_reads_flags_moves_deletes_and_expunges() {
    let (store, _client) = store_with_alice(Backend::Postgres).await;
    let replica = store.replica().await;
    let gw_a = TestImap::start(&store.uri()).await;
    let gw_b = TestImap::start(&replica.uri()).await;
    let b = gw_b.imap;
    let mut other = RawImap::connect(b).await;
    other.login().await;
    other.ok("CREATE Work").await;
    for id in ["alpha", "beta", "gamma", "delta"] {
        let m = String::from_utf8(message(id, &format!("the body of {id}"))).unwrap();
        other
            .ok(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()))
            .await;
    }

    let dir = tempfile::tempdir().unwrap();
    let rc = muttrc(dir.path(), gw_a.imap.port());
    let t = Tmux::start(&rc);

    // Open: the INBOX's four messages, all new.
    let s = t
        .wait("the INBOX with four messages", |s| {
            s.contains("msgs=4")
                && ["alpha", "beta", "gamma", "delta"]
                    .iter()
                    .all(|id| Tmux::line_of(s, id).is_some())
        })
        .await;
    assert!(
        Tmux::flags(&s, "alpha").unwrap().contains('N'),
        "alpha is new:\n{s}"
    );

    // Another session (gateway B, replica 2) delivers a message: NeoMutt
    // sees it by its mail check.
    let m = String::from_utf8(message("epsilon", "the body of epsilon")).unwrap();
    other
        .ok(&format!("APPEND INBOX {{{}+}}\r\n{m}", m.len()))
        .await;
    t.wait("the new message from the other session", |s| {
        s.contains("msgs=5") && Tmux::line_of(s, "epsilon").is_some()
    })
    .await;

    // Read alpha: the pager shows its body; back in the index it is no
    // longer new.
    t.select("alpha").await;
    t.key("Enter");
    t.wait("alpha in the pager", |s| {
        s.contains("PAGER") && s.contains("test alpha") && s.contains("the body of alpha")
    })
    .await;
    t.type_text("i");
    let s = t
        .wait("the index, alpha read", |s| {
            s.contains("STATUS") && Tmux::flags(s, "alpha").is_some_and(|f| !f.contains('N'))
        })
        .await;
    assert!(
        Tmux::flags(&s, "beta").unwrap().contains('N'),
        "only alpha was read:\n{s}"
    );

    // Flag alpha (F: flag-message).
    t.select("alpha").await;
    t.type_text("F");
    t.wait("alpha flagged", |s| {
        Tmux::flags(s, "alpha").is_some_and(|f| f.contains('!'))
    })
    .await;

    // Move beta to Work (s: save-message, which with `delete` marks the
    // original deleted).
    t.select("beta").await;
    t.type_text("s");
    t.wait("the save prompt", |s| s.contains("Save to mailbox"))
        .await;
    // Clear the suggested name, then name the folder.
    t.key("C-u");
    t.type_text("=Work");
    t.key("Enter");
    t.wait("beta saved and marked deleted", |s| {
        Tmux::flags(s, "beta").is_some_and(|f| f.contains('D'))
    })
    .await;

    // Delete gamma (d).
    t.select("gamma").await;
    t.type_text("d");
    t.wait("gamma marked deleted", |s| {
        Tmux::flags(s, "gamma").is_some_and(|f| f.contains('D'))
    })
    .await;

    // Sync ($): the deleted messages are expunged.
    t.type_text("$");
    let s = t
        .wait("the INBOX after the sync", |s| {
            s.contains("msgs=3")
                && Tmux::line_of(s, "beta").is_none()
                && Tmux::line_of(s, "gamma").is_none()
        })
        .await;
    for id in ["alpha", "delta", "epsilon"] {
        assert!(Tmux::line_of(&s, id).is_some(), "{id} stays:\n{s}");
    }

    // The other session expunges delta: NeoMutt drops it.
    other.ok("SELECT INBOX").await;
    let r = other.ok("SEARCH SUBJECT delta").await;
    let n = r
        .iter()
        .find_map(|l| l.strip_prefix("* SEARCH "))
        .map(|l| l.trim().to_string())
        .unwrap();
    other
        .ok(&format!("STORE {n} +FLAGS.SILENT (\\Deleted)"))
        .await;
    other.ok("EXPUNGE").await;
    let s = t
        .wait("delta gone after the other session's expunge", |s| {
            s.contains("msgs=2") && Tmux::line_of(s, "delta").is_none()
        })
        .await;
    assert!(Tmux::flags(&s, "alpha").is_some_and(|f| f.contains('!')));

    // The server: alpha read and flagged, epsilon untouched; beta in Work.
    let inbox = server(b, "INBOX").await;
    let subjects: Vec<&str> = inbox.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["test alpha", "test epsilon"], "{inbox:?}");
    let alpha = &inbox[0].1;
    assert!(
        alpha.contains("\\Seen") && alpha.contains("\\Flagged"),
        "{inbox:?}"
    );
    assert!(!inbox[1].1.contains("\\Seen"), "{inbox:?}");
    let work = server(b, "Work").await;
    assert_eq!(work.len(), 1, "{work:?}");
    assert_eq!(work[0].0, "test beta");

    // Quit (q): NeoMutt leaves cleanly.
    t.type_text("q");
    let start = Instant::now();
    while t.tmux(&["has-session", "-t", "mutt"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "NeoMutt did not quit:\n{}",
            t.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
