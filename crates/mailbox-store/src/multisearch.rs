//! MULTISEARCH (RFC 7377 2): which of an account's mailboxes one search
//! covers. The filters are NOTIFY's (RFC 5465 6) plus `subtree-one`:
//! `personal`, `inboxes`, `subscribed`, `subtree`, `subtree-one` and
//! `mailboxes`. The search itself is [`crate::Store::search`], once per
//! mailbox, inside the one call.

use mail_types::MailboxName;
use mailbox_api::pb;

use crate::error::{Result, StoreError};

/// Mailbox names one MULTISEARCH may carry in all.
pub const MAX_NAMES: usize = 1000;

/// Mailboxes searched at once within one call.
pub const PARALLEL: usize = 4;

/// One mailbox to search: its name and UIDVALIDITY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub name: String,
    pub uid_validity: u32,
}

/// A name as the store keeps it (INBOX in capitals, `/` separated), or
/// `None` for one no mailbox can have.
fn normal(name: &str) -> Option<String> {
    MailboxName::parse(name)
        .ok()
        .map(|n| n.as_str().to_string())
}

/// The mailboxes of `all` (the account's, in name order) that `req`
/// chooses, each once, in name order. Names that are not mailboxes of the
/// account choose nothing.
pub fn resolve(req: &pb::MultiSearchRequest, all: &[pb::MailboxInfo]) -> Result<Vec<Chosen>> {
    let named = req.mailboxes.len() + req.subtrees.len() + req.subtrees_one.len();
    if named > MAX_NAMES {
        return Err(StoreError::Invalid(format!(
            "multisearch: more than {MAX_NAMES} mailbox names"
        )));
    }
    let norm = |v: &[String]| -> Vec<String> { v.iter().filter_map(|n| normal(n)).collect() };
    let (exact, subtrees, subtrees_one) = (
        norm(&req.mailboxes),
        norm(&req.subtrees),
        norm(&req.subtrees_one),
    );
    let chosen = |name: &str, subscribed: bool| -> bool {
        req.personal
            || (req.inboxes && name == "INBOX")
            || (req.subscribed && subscribed)
            || exact.iter().any(|n| n == name)
            || subtrees.iter().any(|root| below(name, root).is_some())
            || subtrees_one
                .iter()
                .any(|root| below(name, root).is_some_and(|rest| !rest.contains('/')))
    };
    Ok(all
        .iter()
        .filter(|m| chosen(&m.name, m.subscribed))
        .map(|m| Chosen {
            name: m.name.clone(),
            uid_validity: m.uid_validity,
        })
        .collect())
}

/// What follows `root` in `name` when `name` is `root` ("") or below it
/// ("a/b" below "a" is "b").
fn below<'a>(name: &'a str, root: &str) -> Option<&'a str> {
    if name == root {
        return Some("");
    }
    name.strip_prefix(root)?.strip_prefix('/')
}

/// The MODSEQ of each of `uids` (ascending) from `rows` (UID and MODSEQ,
/// ascending); 0 for a UID no longer there.
pub fn modseqs_of(uids: &[u32], rows: &[(i64, i64)]) -> Vec<u64> {
    let mut out = Vec::with_capacity(uids.len());
    let mut i = 0;
    for &u in uids {
        while i < rows.len() && rows[i].0 < i64::from(u) {
            i += 1;
        }
        out.push(match rows.get(i) {
            Some(&(uid, modseq)) if uid == i64::from(u) => modseq as u64,
            _ => 0,
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn boxes() -> Vec<pb::MailboxInfo> {
        [
            ("INBOX", true),
            ("INBOX/a", false),
            ("Lists", true),
            ("Lists/rust", false),
            ("Lists/rust/old", true),
            ("ListsX", false),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (n, s))| pb::MailboxInfo {
            name: n.into(),
            subscribed: s,
            uid_validity: i as u32 + 1,
            ..Default::default()
        })
        .collect()
    }

    fn names(req: pb::MultiSearchRequest) -> Vec<String> {
        resolve(&req, &boxes())
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn filters_choose_as_rfc_5465_6_says() {
        let r = |f: fn(&mut pb::MultiSearchRequest)| {
            let mut req = pb::MultiSearchRequest::default();
            f(&mut req);
            names(req)
        };
        assert_eq!(r(|q| q.personal = true).len(), 6);
        assert_eq!(r(|q| q.inboxes = true), ["INBOX"]);
        assert_eq!(
            r(|q| q.subscribed = true),
            ["INBOX", "Lists", "Lists/rust/old"]
        );
        assert_eq!(
            r(|q| q.subtrees = vec!["Lists".into()]),
            ["Lists", "Lists/rust", "Lists/rust/old"]
        );
        assert_eq!(
            r(|q| q.subtrees_one = vec!["Lists".into()]),
            ["Lists", "Lists/rust"]
        );
        // INBOX in any case; a name twice is searched once; an unknown
        // name chooses nothing.
        assert_eq!(
            r(|q| q.mailboxes = vec!["inbox".into(), "INBOX".into(), "Nope".into()]),
            ["INBOX"]
        );
        assert_eq!(
            r(|q| {
                q.inboxes = true;
                q.subtrees = vec!["inbox".into()];
            }),
            ["INBOX", "INBOX/a"]
        );
        assert!(r(|_| {}).is_empty());
    }

    #[test]
    fn too_many_names_is_invalid() {
        let req = pb::MultiSearchRequest {
            mailboxes: vec!["a".into(); MAX_NAMES + 1],
            ..Default::default()
        };
        assert!(resolve(&req, &boxes()).is_err());
    }

    #[test]
    fn modseqs_follow_the_uids() {
        let rows = [(1, 10), (2, 11), (4, 14), (9, 19)];
        assert_eq!(modseqs_of(&[1, 4, 9], &rows), [10, 14, 19]);
        assert_eq!(modseqs_of(&[3, 9, 12], &rows), [0, 19, 0]);
        assert!(modseqs_of(&[], &rows).is_empty());
    }
}
