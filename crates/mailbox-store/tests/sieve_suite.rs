//! The store's Sieve scripts (issue #26), on both backends (a fresh
//! PostgreSQL database per test, and a fresh SQLite file), through the
//! real gRPC server: the calls ManageSieve makes, the per-account limits,
//! the one-active rule, and account isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestStore, start, start_with};
use mailbox_api::{SieveClient, pb};
use tonic::Code;

both_backends!(
    scripts_are_put_listed_got_renamed_and_deleted,
    one_script_is_active_at_most,
    limits_on_count_and_size_hold,
    scripts_belong_to_one_account,
    invalid_scripts_and_names_are_refused,
    concurrent_puts_never_pass_the_limit,
);

const SCRIPT: &str = "require \"fileinto\";\r\nif header :contains \"subject\" \"x\" {\r\n  fileinto \"X\";\r\n}\r\n";

/// A Sieve client logged in as `user` (created with password "pw").
async fn sieve_for(t: &TestStore, user: &str) -> SieveClient {
    let domain = user.split('@').nth(1).unwrap();
    let _ = t
        .admin()
        .add_domain(pb::AddDomainRequest {
            name: domain.into(),
        })
        .await;
    t.add_account(user, "pw").await;
    let token = t
        .authenticate(user, "pw", "127.0.0.1")
        .await
        .unwrap()
        .into_inner()
        .session_token;
    mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref())
            .unwrap()
            .with_session(&token)
            .unwrap(),
    )
}

async fn put(c: &mut SieveClient, name: &str, content: &str) -> pb::PutScriptResponse {
    c.put_script(pb::PutScriptRequest {
        name: name.into(),
        content: content.as_bytes().to_vec(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn names(c: &mut SieveClient) -> Vec<(String, bool)> {
    c.list_scripts(pb::ListScriptsRequest {})
        .await
        .unwrap()
        .into_inner()
        .scripts
        .into_iter()
        .map(|s| (s.name, s.active))
        .collect()
}

async fn scripts_are_put_listed_got_renamed_and_deleted(backend: Backend) {
    let t = start(backend).await;
    let mut c = sieve_for(&t, "ann@example.org").await;
    assert!(names(&mut c).await.is_empty());
    let first = put(&mut c, "main", SCRIPT).await;
    assert!(first.error.is_none() && first.quota == 0 && first.version > 0);
    put(&mut c, "vacation", "keep;").await;
    assert_eq!(
        names(&mut c).await,
        vec![("main".into(), false), ("vacation".into(), false)]
    );
    let got = c
        .get_script(pb::GetScriptRequest {
            name: "main".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.content, SCRIPT.as_bytes());
    assert_eq!(got.version, first.version);
    let listed = c
        .list_scripts(pb::ListScriptsRequest {})
        .await
        .unwrap()
        .into_inner()
        .scripts;
    assert_eq!(listed[0].size, SCRIPT.len() as u64);

    // Replacing gives a new version.
    let again = put(&mut c, "main", "discard;").await;
    assert!(again.version > first.version);
    let got = c
        .get_script(pb::GetScriptRequest {
            name: "main".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.content, b"discard;");

    // Rename: to a free name, not onto another script, not a missing one.
    c.rename_script(pb::RenameScriptRequest {
        old_name: "main".into(),
        new_name: "Haupt ünïcode".into(),
    })
    .await
    .unwrap();
    let e = c
        .rename_script(pb::RenameScriptRequest {
            old_name: "Haupt ünïcode".into(),
            new_name: "vacation".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .rename_script(pb::RenameScriptRequest {
            old_name: "main".into(),
            new_name: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        names(&mut c).await,
        vec![("Haupt ünïcode".into(), false), ("vacation".into(), false)]
    );

    // Get and delete of a missing script: NOT_FOUND (NONEXISTENT).
    for e in [
        c.get_script(pb::GetScriptRequest {
            name: "main".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err(),
        c.delete_script(pb::DeleteScriptRequest {
            name: "main".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound);
    }
    c.delete_script(pb::DeleteScriptRequest {
        name: "vacation".into(),
    })
    .await
    .unwrap();
    assert_eq!(names(&mut c).await, vec![("Haupt ünïcode".into(), false)]);
}

async fn one_script_is_active_at_most(backend: Backend) {
    let t = start(backend).await;
    let mut c = sieve_for(&t, "ann@example.org").await;
    let none = c
        .get_active_script(pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!none.found);
    put(&mut c, "a", "keep;").await;
    put(&mut c, "b", "discard;").await;
    c.set_active(pb::SetActiveRequest { name: "a".into() })
        .await
        .unwrap();
    let a = c
        .get_active_script(pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(a.found && a.name == "a" && a.content == b"keep;");
    c.set_active(pb::SetActiveRequest { name: "b".into() })
        .await
        .unwrap();
    assert_eq!(
        names(&mut c).await,
        vec![("a".into(), false), ("b".into(), true)]
    );
    let b = c
        .get_active_script(pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(b.found && b.name == "b" && b.version > a.version);

    // Activating a missing script changes nothing.
    let e = c
        .set_active(pb::SetActiveRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        names(&mut c).await,
        vec![("a".into(), false), ("b".into(), true)]
    );

    // The active script is not deleted (RFC 5804 ACTIVE); replacing it
    // keeps it active with a new version; renaming keeps it active.
    let e = c
        .delete_script(pb::DeleteScriptRequest { name: "b".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let replaced = put(&mut c, "b", "stop;").await;
    let now = c
        .get_active_script(pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.content, b"stop;");
    assert_eq!(now.version, replaced.version);
    c.rename_script(pb::RenameScriptRequest {
        old_name: "b".into(),
        new_name: "c".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        names(&mut c).await,
        vec![("a".into(), false), ("c".into(), true)]
    );

    // Deactivate (empty name), then the script may go.
    c.set_active(pb::SetActiveRequest {
        name: String::new(),
    })
    .await
    .unwrap();
    assert!(
        !c.get_active_script(pb::GetActiveScriptRequest {})
            .await
            .unwrap()
            .into_inner()
            .found
    );
    c.delete_script(pb::DeleteScriptRequest { name: "c".into() })
        .await
        .unwrap();

    // The database itself refuses a second active script.
    c.set_active(pb::SetActiveRequest { name: "a".into() })
        .await
        .unwrap();
    put(&mut c, "d", "keep;").await;
    let second = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
            sqlx::query("UPDATE sieve_scripts SET active = TRUE WHERE name = 'd'")
                .execute(&pool)
                .await
                .map(|_| ())
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(t.url()).await.unwrap();
            sqlx::query("UPDATE sieve_scripts SET active = 1 WHERE name = 'd'")
                .execute(&pool)
                .await
                .map(|_| ())
        }
    };
    assert!(second.is_err(), "a second active script was allowed");
}

async fn limits_on_count_and_size_hold(backend: Backend) {
    let t = start_with(backend, |s| {
        s.sieve_max_scripts = 3;
        s.sieve_max_script_size = 2048;
    })
    .await;
    let mut c = sieve_for(&t, "ann@example.org").await;
    for n in ["1", "2", "3"] {
        assert_eq!(put(&mut c, n, "keep;").await.quota, 0);
    }
    let space = |name: &str, size: u64| pb::HaveSpaceRequest {
        name: name.into(),
        size,
    };
    // A fourth is refused; replacing one of the three is not.
    let r = put(&mut c, "4", "keep;").await;
    assert_eq!(r.quota, pb::SieveQuota::MaxScripts as i32);
    assert_eq!((r.version, r.max_scripts), (0, 3));
    assert_eq!(put(&mut c, "2", "discard;").await.quota, 0);
    let h = c.have_space(space("4", 10)).await.unwrap().into_inner();
    assert_eq!(h.quota, pb::SieveQuota::MaxScripts as i32);
    let h = c.have_space(space("3", 10)).await.unwrap().into_inner();
    assert_eq!(h.quota, pb::SieveQuota::None as i32);

    // Size: 2048 bytes fit, 2049 do not.
    let big = format!("keep;{}", "#".repeat(2048 - 5));
    assert_eq!(put(&mut c, "3", &big).await.quota, 0);
    let r = put(&mut c, "3", &format!("{big}#")).await;
    assert_eq!(r.quota, pb::SieveQuota::MaxSize as i32);
    assert_eq!(r.max_size, 2048);
    let h = c.have_space(space("3", 2049)).await.unwrap().into_inner();
    assert_eq!(h.quota, pb::SieveQuota::MaxSize as i32);
    let checked = c
        .check_script(pb::CheckScriptRequest {
            content: vec![b'#'; 4096],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(checked.error.is_some());
    assert_eq!(names(&mut c).await.len(), 3);

    // After a delete there is room again.
    c.delete_script(pb::DeleteScriptRequest { name: "1".into() })
        .await
        .unwrap();
    assert_eq!(put(&mut c, "4", "keep;").await.quota, 0);
}

async fn scripts_belong_to_one_account(backend: Backend) {
    let t = start(backend).await;
    let mut ann = sieve_for(&t, "ann@example.org").await;
    let mut bob = sieve_for(&t, "bob@example.org").await;
    put(&mut ann, "main", "discard;").await;
    ann.set_active(pb::SetActiveRequest {
        name: "main".into(),
    })
    .await
    .unwrap();
    // Bob sees none of Ann's scripts and cannot touch them by name.
    assert!(names(&mut bob).await.is_empty());
    assert!(
        !bob.get_active_script(pb::GetActiveScriptRequest {})
            .await
            .unwrap()
            .into_inner()
            .found
    );
    let codes = [
        bob.get_script(pb::GetScriptRequest {
            name: "main".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err()
        .code(),
        bob.set_active(pb::SetActiveRequest {
            name: "main".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err()
        .code(),
        bob.rename_script(pb::RenameScriptRequest {
            old_name: "main".into(),
            new_name: "x".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err()
        .code(),
        bob.delete_script(pb::DeleteScriptRequest {
            name: "main".into(),
        })
        .await
        .map(|_| ())
        .unwrap_err()
        .code(),
    ];
    assert_eq!(codes, [Code::NotFound; 4]);
    // Bob's script of the same name is his own; deactivating his
    // scripts leaves Ann's active.
    put(&mut bob, "main", "keep;").await;
    bob.set_active(pb::SetActiveRequest {
        name: String::new(),
    })
    .await
    .unwrap();
    let a = ann
        .get_active_script(pb::GetActiveScriptRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(a.found && a.content == b"discard;");

    // No token, a forged token: refused.
    let anon = mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref()).unwrap(),
    );
    let forged = mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref())
            .unwrap()
            .with_session(&"ab".repeat(32))
            .unwrap(),
    );
    for mut c in [anon, forged] {
        let e = c.list_scripts(pb::ListScriptsRequest {}).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }

    // An operator's session (Admin.OpenSession) acts for that account.
    let token = t
        .admin()
        .open_session(pb::OpenSessionRequest {
            address: "ann@example.org".into(),
            purpose: "sieve".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut op = mailbox_api::sieve_client(
        t.channel(),
        mailbox_api::CallAuth::new(t.secret.as_deref())
            .unwrap()
            .with_session(&token)
            .unwrap(),
    );
    assert_eq!(names(&mut op).await, vec![("main".into(), true)]);
}

async fn invalid_scripts_and_names_are_refused(backend: Backend) {
    let t = start(backend).await;
    let mut c = sieve_for(&t, "ann@example.org").await;
    // Not UTF-8: refused with its place, nothing stored.
    let r = c
        .put_script(pb::PutScriptRequest {
            name: "bad".into(),
            content: b"keep;\nfileinto \"a\xff\";".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let e = r.error.expect("refused");
    assert_eq!((e.line, e.column), (2, 12));
    assert_eq!(r.version, 0);
    assert!(names(&mut c).await.is_empty());
    let checked = c
        .check_script(pb::CheckScriptRequest {
            content: b"\xc3".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(checked.error.is_some());
    let ok = c
        .check_script(pb::CheckScriptRequest {
            content: SCRIPT.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.error.is_none(), "{:?}", ok.error);

    // Names (RFC 5804 1.6): not empty, no control characters.
    for name in [
        "",
        "a\nb",
        "tab\there",
        "nul\0",
        "ls\u{2028}",
        &"x".repeat(513),
    ] {
        let e = c
            .put_script(pb::PutScriptRequest {
                name: name.into(),
                content: b"keep;".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name:?}");
    }
    assert!(names(&mut c).await.is_empty());
}

async fn concurrent_puts_never_pass_the_limit(backend: Backend) {
    let t = start_with(backend, |s| s.sieve_max_scripts = 5).await;
    let c = sieve_for(&t, "ann@example.org").await;
    // On PostgreSQL through two replicas, so the limit is the database's.
    let other = match backend {
        Backend::Postgres => Some(t.replica_with(|s| s.sieve_max_scripts = 5).await),
        Backend::Sqlite => None,
    };
    let c2 = match &other {
        Some(r) => {
            let token = r
                .authenticate("ann@example.org", "pw", "127.0.0.1")
                .await
                .unwrap()
                .into_inner()
                .session_token;
            mailbox_api::sieve_client(
                r.channel(),
                mailbox_api::CallAuth::new(r.secret.as_deref())
                    .unwrap()
                    .with_session(&token)
                    .unwrap(),
            )
        }
        None => c.clone(),
    };
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut c = if i % 2 == 0 { c.clone() } else { c2.clone() };
        tasks.push(tokio::spawn(async move {
            let r = put(&mut c, &format!("s{i}"), "keep;").await;
            if i % 3 == 0 {
                // Activation races with the puts, one active at most.
                let _ = c
                    .set_active(pb::SetActiveRequest {
                        name: format!("s{i}"),
                    })
                    .await;
            }
            r.quota == 0
        }));
    }
    let mut stored = 0;
    for t in tasks {
        if t.await.unwrap() {
            stored += 1;
        }
    }
    let mut c = c;
    let listed = names(&mut c).await;
    assert_eq!((stored, listed.len()), (5, 5), "{listed:?}");
    assert!(listed.iter().filter(|(_, a)| *a).count() <= 1);
}
