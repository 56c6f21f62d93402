//! isync (mbsync), a client we did not write, syncing several folders and
//! flag changes both ways with imap-gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::mailbox_api::pb;
use e2e::{Backend, TestImap, TestStore, message};

fn config(dir: &Path, port: u16) -> PathBuf {
    let maildir = dir.join("mail");
    std::fs::create_dir_all(&maildir).unwrap();
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount test\nHost 127.0.0.1\nPort {port}\nUser alice@example.org\n\
             Pass pw-alice\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount test\n\n\
             MaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\n\
             Expunge Both\nSyncState *\nSync All\n",
            m = maildir.display()
        ),
    )
    .unwrap();
    rc
}

fn mbsync(rc: &Path) -> String {
    let out = Command::new("mbsync")
        .arg("-c")
        .arg(rc)
        .arg("-a")
        .output()
        .expect("mbsync runs (apt-get install isync)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed:\n{text}");
    text
}

/// Files of a maildir folder (cur and new).
fn files(folder: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(folder.join(sub)) {
            out.extend(rd.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_two_way_sync_of_folders_and_flags() {
    let store = TestStore::start(Backend::Sqlite).await;
    let client = store.client();
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw-alice").await;
    client
        .deliver("m1", &["alice@example.org"], &message("sync-1", "one"))
        .await;
    client
        .deliver("m2", &["alice@example.org"], &message("sync-2", "two"))
        .await;
    let mut alice = client.login("alice@example.org", "pw-alice").await;
    alice
        .create_mailbox(pb::CreateMailboxRequest {
            name: "Work".into(),
            special_use: 0,
        })
        .await
        .unwrap();
    let imap = TestImap::start(&store.uri()).await;
    let dir = tempfile::tempdir().unwrap();
    let rc = config(dir.path(), imap.imap.port());

    // 1. Server -> local.
    let rc2 = rc.clone();
    tokio::task::spawn_blocking(move || mbsync(&rc2))
        .await
        .unwrap();
    let mail = dir.path().join("mail");
    let inbox = files(&mail.join("INBOX"));
    assert_eq!(inbox.len(), 2, "INBOX not synced");
    assert!(
        mail.join("Work").is_dir() && mail.join("Sent").is_dir(),
        "folders not created locally"
    );

    // 2. Local changes: flag one message seen+flagged, add a message to
    // Work, create a new folder with a message.
    let first = &inbox[0];
    let name = first.file_name().unwrap().to_string_lossy().to_string();
    let base = name.split(":2,").next().unwrap().to_string();
    std::fs::rename(first, mail.join("INBOX/cur").join(format!("{base}:2,FS"))).unwrap();
    let write_msg = |folder: &str, id: &str| {
        let f = mail.join(folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(f.join(sub)).unwrap();
        }
        std::fs::write(
            f.join("new").join(format!("1700000000.{id}.local")),
            message(id, "written locally"),
        )
        .unwrap();
    };
    write_msg("Work", "local-work");
    write_msg("Local", "local-new-folder");
    let rc2 = rc.clone();
    tokio::task::spawn_blocking(move || mbsync(&rc2))
        .await
        .unwrap();

    let server = |name: &'static str| {
        let client = client.clone();
        async move { client.messages("alice@example.org", "pw-alice", name).await }
    };
    let work = server("Work").await;
    assert_eq!(work.len(), 1);
    assert!(String::from_utf8_lossy(&work[0]).contains("local-work@"));
    let local = server("Local").await;
    assert_eq!(local.len(), 1, "new local folder not created on the server");
    let mut s = alice
        .select(pb::SelectRequest {
            name: "INBOX".into(),
            read_only: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut entries = Vec::new();
    while let Some(p) = s.message().await.unwrap() {
        if let Some(pb::select_response::Part::Batch(b)) = p.part {
            entries.extend(b.messages);
        }
    }
    let flagged: Vec<_> = entries
        .iter()
        .filter(|e| e.flags.as_ref().is_some_and(|f| f.flagged && f.seen))
        .collect();
    assert_eq!(
        flagged.len(),
        1,
        "local flag change not synced: {entries:?}"
    );

    // 3. Server changes: a new delivery, a flag change, a deletion.
    client
        .deliver("m3", &["alice@example.org"], &message("sync-3", "three"))
        .await;
    let other = entries
        .iter()
        .find(|e| !e.flags.as_ref().unwrap().flagged)
        .unwrap()
        .uid;
    alice
        .store_flags(pb::StoreFlagsRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([other])),
            mode: pb::FlagsMode::Add as i32,
            flags: Some(pb::Flags {
                answered: true,
                ..Default::default()
            }),
            unchanged_since: 0,
        })
        .await
        .unwrap();
    let flagged_uid = flagged[0].uid;
    alice
        .expunge(pb::ExpungeRequest {
            mailbox: "INBOX".into(),
            uids: Some(pb::UidSet::of([flagged_uid])),
            ignore_deleted_flag: true,
            lease_id: String::new(),
        })
        .await
        .unwrap();
    let rc2 = rc.clone();
    tokio::task::spawn_blocking(move || mbsync(&rc2))
        .await
        .unwrap();
    let inbox = files(&mail.join("INBOX"));
    assert_eq!(
        inbox.len(),
        2,
        "expected sync-2 and sync-3 locally: {inbox:?}"
    );
    let contents: Vec<String> = inbox
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        contents.iter().any(|c| c.contains("sync-3@")),
        "new delivery not synced"
    );
    assert!(
        !contents.iter().any(|c| c.contains("Message-ID: <sync-1@")),
        "deletion not synced"
    );
    let answered = inbox.iter().any(|p| {
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        n.split(":2,").nth(1).is_some_and(|f| f.contains('R'))
    });
    assert!(answered, "server flag change not synced: {inbox:?}");
}
