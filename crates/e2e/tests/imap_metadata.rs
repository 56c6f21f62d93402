//! METADATA (RFC 5464) end to end over raw sessions, on both store
//! backends, with NOTIFY's MailboxMetadataChange / ServerMetadataChange
//! (RFC 5465 5.6, 5.7).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, RawImap, TestImap, store_with_alice, tagged};

/// RFC 5464 4.2 (GETMETADATA, DEPTH, MAXSIZE and LONGENTRIES), 4.3
/// (SETMETADATA, NIL removes, MAXSIZE and TOOMANY refusals, all or
/// nothing), 3.2 (entry names), 3.3-3.4 (server entries with "", entries
/// follow RENAME and go with DELETE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_server_and_mailbox_entries() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (store, _client) = store_with_alice(backend).await;
        let imap = TestImap::start(&store.uri()).await;
        let mut a = RawImap::connect(imap.imap).await;
        a.login().await;
        let mut b = RawImap::connect(imap.imap).await;
        b.login().await;
        let caps = a.cmd("CAPABILITY").await;
        assert!(
            caps[0].contains(" METADATA ") && caps[0].contains(" METADATA-SERVER "),
            "{caps:?}"
        );
        // NOTIFY for metadata changes, in the other session.
        b.ok("NOTIFY SET (personal (MailboxMetadataChange ServerMetadataChange))")
            .await;

        a.ok("SETMETADATA INBOX (/private/comment \"My comment\" /Shared/Comment \"Shared one\")")
            .await;
        let seen = b.until("* METADATA").await;
        let l = seen.last().unwrap();
        assert!(l.starts_with("* METADATA \"INBOX\" "), "{seen:?}");
        assert!(
            l.contains("\"/private/comment\"") && l.contains("\"/shared/comment\""),
            "{l}"
        );
        let r = a.ok("GETMETADATA INBOX /private/comment").await;
        assert_eq!(
            r[0],
            "* METADATA \"INBOX\" (\"/private/comment\" \"My comment\")\r\n"
        );
        let r = a
            .ok("GETMETADATA INBOX (/private/comment /shared/comment /shared/nothing)")
            .await;
        assert_eq!(
            r[0],
            "* METADATA \"INBOX\" (\"/private/comment\" \"My comment\" \"/shared/comment\" \"Shared one\")\r\n"
        );
        // DEPTH (4.2.2).
        a.ok("SETMETADATA INBOX (/private/vendor/x \"1\" /private/vendor/x/y \"2\")")
            .await;
        let r = a.ok("GETMETADATA (DEPTH 1) INBOX /private/vendor").await;
        assert_eq!(
            r[0],
            "* METADATA \"INBOX\" (\"/private/vendor/x\" \"1\")\r\n"
        );
        let r = a
            .ok("GETMETADATA (DEPTH infinity) INBOX /private/vendor")
            .await;
        assert_eq!(
            r[0],
            "* METADATA \"INBOX\" (\"/private/vendor/x\" \"1\" \"/private/vendor/x/y\" \"2\")\r\n"
        );
        // MAXSIZE (4.2.1): left out, and LONGENTRIES says how long.
        let r = a
            .ok("GETMETADATA (MAXSIZE 5) INBOX (/private/comment /private/vendor/x)")
            .await;
        assert_eq!(
            r[0],
            "* METADATA \"INBOX\" (\"/private/vendor/x\" \"1\")\r\n"
        );
        assert!(tagged(&r).contains("[METADATA LONGENTRIES 10]"), "{r:?}");
        // NIL removes.
        a.ok("SETMETADATA INBOX (/private/comment NIL)").await;
        let r = a.ok("GETMETADATA INBOX /private/comment").await;
        assert_eq!(r.len(), 1, "{r:?}");
        // Server entries: mailbox "".
        a.ok("SETMETADATA \"\" (/shared/admin \"mailto:admin@example.org\")")
            .await;
        let seen = b.until("/shared/admin").await;
        assert!(
            seen.last().unwrap().starts_with("* METADATA \"\" "),
            "{seen:?}"
        );
        let r = a.ok("GETMETADATA \"\" /shared/admin").await;
        assert_eq!(
            r[0],
            "* METADATA \"\" (\"/shared/admin\" \"mailto:admin@example.org\")\r\n"
        );
        // Refusals: bad names BAD; a value too large; too many entries,
        // with nothing of the refused command kept.
        for bad in [
            "SETMETADATA INBOX (/other/x \"v\")",
            "SETMETADATA INBOX (/shared/ \"v\")",
            "GETMETADATA INBOX /shared/*",
        ] {
            let r = a.cmd(bad).await;
            assert!(tagged(&r).contains(" BAD "), "{bad}: {r:?}");
        }
        let big = "v".repeat(70_000);
        let r = a
            .cmd(&format!(
                "SETMETADATA INBOX (/private/big {{{}+}}\r\n{big})",
                big.len()
            ))
            .await;
        assert!(tagged(&r).contains("NO [METADATA MAXSIZE 65536]"), "{r:?}");
        let many: Vec<String> = (0..250).map(|i| format!("/private/e{i} \"x\"")).collect();
        a.ok(&format!("SETMETADATA Drafts ({})", many.join(" ")))
            .await;
        let more: Vec<String> = (250..260).map(|i| format!("/private/e{i} \"x\"")).collect();
        let r = a
            .cmd(&format!("SETMETADATA Drafts ({})", more.join(" ")))
            .await;
        assert!(tagged(&r).contains("NO [METADATA TOOMANY]"), "{r:?}");
        let r = a.ok("GETMETADATA Drafts /private/e255").await;
        assert_eq!(r.len(), 1, "nothing of a refused SETMETADATA kept: {r:?}");
        // All of an account's values together are bounded too (4 MiB).
        let value = "m".repeat(60_000);
        let mut cmd = String::from("SETMETADATA Sent (");
        for i in 0..75 {
            cmd.push_str(&format!("/private/big{i} {{{}+}}\r\n{value} ", value.len()));
        }
        cmd.pop();
        cmd.push(')');
        let r = a.cmd(&cmd).await;
        assert!(
            tagged(&r).contains("NO [METADATA TOOMANY]"),
            "{}",
            tagged(&r)
        );
        let r = a.ok("GETMETADATA Sent /private/big0").await;
        assert_eq!(r.len(), 1, "nothing kept");
        let r = a.cmd("GETMETADATA Nowhere /private/comment").await;
        assert!(tagged(&r).contains(" NO "), "{r:?}");
        // A value with NUL travels as literal8.
        a.send(b"x1 SETMETADATA INBOX (/private/bin ~{3}\r\na\x00b)\r\n")
            .await;
        let mut l = a.line().await;
        if l.starts_with('+') {
            l = a.line().await;
        }
        assert!(l.starts_with("x1 OK"), "{l}");
        let r = a.ok("GETMETADATA INBOX /private/bin").await;
        assert_eq!(r[0], "* METADATA \"INBOX\" (\"/private/bin\" ~{3}\r\n");
        assert_eq!(r[1], "a\0b)\r\n");
        // Entries follow RENAME and go with DELETE.
        a.ok("CREATE Proj").await;
        a.ok("SETMETADATA Proj (/shared/comment \"p\")").await;
        a.ok("RENAME Proj Proj2").await;
        let r = a.ok("GETMETADATA Proj2 /shared/comment").await;
        assert_eq!(r[0], "* METADATA \"Proj2\" (\"/shared/comment\" \"p\")\r\n");
        a.ok("DELETE Proj2").await;
        a.ok("CREATE Proj2").await;
        let r = a.ok("GETMETADATA Proj2 /shared/comment").await;
        assert_eq!(r.len(), 1, "{r:?}");
        // The session's own changes are not echoed to it.
        b.ok("NOOP").await;
        let r = b.ok("SETMETADATA INBOX (/private/own \"x\")").await;
        assert!(!r.iter().any(|l| l.contains("/private/own")), "{r:?}");
        let r = b.ok("NOOP").await;
        assert!(!r.iter().any(|l| l.contains("/private/own")), "{r:?}");
    }
}
