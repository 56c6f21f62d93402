//! MULTISEARCH (RFC 7377 2): which of an account's mailboxes one search
//! covers, and what of a mailbox's search goes back. The filters are
//! NOTIFY's (RFC 5465 6) plus `subtree-one`: `personal`, `inboxes`,
//! `subscribed`, `subtree`, `subtree-one` and `mailboxes`. The search
//! itself is `Store::multi_search` (store/multisearch.rs).
//!
//! Message numbers and `*` in a search of mailboxes other than the
//! selected one are each mailbox's own (RFC 9051 9: `*` is the largest
//! number in use there); [`resolve_key`] turns them into UID sets once a
//! mailbox's UIDs are known.

use mail_types::MailboxName;
use mailbox_api::pb;
use pb::search_key::Key;

use crate::error::{Result, StoreError, reason::LIMIT};

/// Mailbox names one MULTISEARCH may carry in all.
pub const MAX_NAMES: usize = 1000;

/// Mailboxes one MULTISEARCH may search: more is refused ("limit"), so a
/// command's cost is bounded whatever the account holds.
pub const MAX_MAILBOXES: usize = 1000;

/// The largest answer one MULTISEARCH sends (encoded), well under the
/// 16 MiB gRPC message limit; more is refused ("limit"): the client can
/// ask for MIN, MAX or COUNT, or narrow the search.
pub const MAX_RESPONSE_BYTES: usize = 12 << 20;

/// Mailboxes searched at once within one call.
pub const PARALLEL: usize = 4;

/// One mailbox of the account, as the light listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: i64,
    pub name: String,
    pub uid_validity: u32,
    pub subscribed: bool,
}

/// A name as the store keeps it (INBOX in capitals, `/` separated), or
/// `None` for one no mailbox can have.
fn normal(name: &str) -> Option<String> {
    MailboxName::parse(name)
        .ok()
        .map(|n| n.as_str().to_string())
}

/// The refusal of a search past one of the bounds.
pub fn limit(what: &str) -> StoreError {
    StoreError::Invalid(format!("{LIMIT}: {what}"))
}

/// The mailboxes of `all` (the account's, in name order) that `req`
/// chooses, each once, in name order. Names that are not mailboxes of the
/// account choose nothing. More than [`MAX_MAILBOXES`] is refused.
pub fn resolve(req: &pb::MultiSearchRequest, all: Vec<Listed>) -> Result<Vec<Listed>> {
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
    let out: Vec<Listed> = all
        .into_iter()
        .filter(|m| chosen(&m.name, m.subscribed))
        .collect();
    if out.len() > MAX_MAILBOXES {
        return Err(limit(&format!(
            "one ESEARCH searches at most {MAX_MAILBOXES} mailboxes"
        )));
    }
    Ok(out)
}

/// What follows `root` in `name` when `name` is `root` ("") or below it
/// ("a/b" below "a" is "b").
fn below<'a>(name: &'a str, root: &str) -> Option<&'a str> {
    if name == root {
        return Some("");
    }
    name.strip_prefix(root)?.strip_prefix('/')
}

/// What a key needs of a mailbox before it can be evaluated there: its
/// UIDs (message numbers), or only its largest UID (`*` in a UID set).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relative {
    pub numbers: bool,
    pub star: bool,
}

/// Which relative keys (`seq`, `uid_star`) `key` holds.
pub fn relative(key: &pb::SearchKey) -> Relative {
    fn walk(k: &pb::SearchKey, r: &mut Relative, depth: usize) {
        if depth > crate::search::MAX_DEPTH {
            return;
        }
        match &k.key {
            Some(Key::Seq(_)) => r.numbers = true,
            Some(Key::UidStar(_)) => r.star = true,
            Some(Key::And(l)) | Some(Key::Or(l)) => {
                l.keys.iter().for_each(|k| walk(k, r, depth + 1))
            }
            Some(Key::Not(k)) => walk(k, r, depth + 1),
            _ => {}
        }
    }
    let mut r = Relative::default();
    walk(key, &mut r, 0);
    r
}

/// `key` for one mailbox: message numbers become the UIDs at those
/// positions of `uids` (the mailbox's, ascending; only read when the key
/// has message numbers), and `*` in a UID set `largest` (the largest UID
/// in use there; 0 in an empty mailbox, where a set with `*` matches
/// nothing).
pub fn resolve_key(key: &pb::SearchKey, uids: &[u32], largest: u32) -> pb::SearchKey {
    let k = |k: Key| pb::SearchKey { key: Some(k) };
    let list = |l: &pb::SearchKeyList| pb::SearchKeyList {
        keys: l
            .keys
            .iter()
            .map(|x| resolve_key(x, uids, largest))
            .collect(),
    };
    match &key.key {
        Some(Key::Seq(set)) => {
            let n = uids.len() as u32;
            let mut ranges = Vec::new();
            for r in &set.ranges {
                let (a, b) = ends(r, n);
                if a == 0 || a > n {
                    continue;
                }
                let b = b.min(n);
                // Runs of consecutive UIDs make one range each.
                let slice = &uids[a as usize - 1..b as usize];
                let mut i = 0;
                while i < slice.len() {
                    let mut j = i;
                    while j + 1 < slice.len() && slice[j + 1] == slice[j] + 1 {
                        j += 1;
                    }
                    ranges.push(pb::UidRange {
                        first: slice[i],
                        last: slice[j],
                    });
                    i = j + 1;
                }
            }
            k(Key::Uid(pb::UidSet { ranges }))
        }
        Some(Key::UidStar(set)) => k(Key::Uid(pb::UidSet {
            ranges: set
                .ranges
                .iter()
                .filter_map(|r| {
                    let (a, b) = ends(r, largest);
                    (a > 0).then_some(pb::UidRange { first: a, last: b })
                })
                .collect(),
        })),
        Some(Key::And(l)) => k(Key::And(list(l))),
        Some(Key::Or(l)) => k(Key::Or(list(l))),
        Some(Key::Not(x)) => k(Key::Not(Box::new(resolve_key(x, uids, largest)))),
        _ => key.clone(),
    }
}

/// A range's ends, ascending, with 0 ("*") as `star`.
fn ends(r: &pb::UidRange, star: u32) -> (u32, u32) {
    let v = |x: u32| if x == 0 { star } else { x };
    let (a, b) = (v(r.first), v(r.last));
    (a.min(b), a.max(b))
}

/// COUNT, MIN and MAX of `uids` (ascending) and, with `modseqs` (theirs,
/// in the same order), the MODSEQs of MIN, of MAX and the highest.
pub fn summary(uids: &[u32], modseqs: &[u64]) -> pb::SearchSummary {
    pb::SearchSummary {
        count: uids.len() as u32,
        min: uids.first().copied().unwrap_or(0),
        max: uids.last().copied().unwrap_or(0),
        min_modseq: modseqs.first().copied().unwrap_or(0),
        max_modseq: modseqs.last().copied().unwrap_or(0),
        matched_modseq: modseqs.iter().copied().max().unwrap_or(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn boxes() -> Vec<Listed> {
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
        .map(|(i, (n, s))| Listed {
            id: i as i64 + 1,
            name: n.into(),
            subscribed: s,
            uid_validity: i as u32 + 1,
        })
        .collect()
    }

    fn names(req: pb::MultiSearchRequest) -> Vec<String> {
        resolve(&req, boxes())
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
        assert!(resolve(&req, boxes()).is_err());
    }

    #[test]
    fn too_many_mailboxes_is_a_limit() {
        let all: Vec<Listed> = (0..=MAX_MAILBOXES)
            .map(|i| Listed {
                id: i as i64,
                name: format!("m{i:05}"),
                uid_validity: 1,
                subscribed: false,
            })
            .collect();
        let req = pb::MultiSearchRequest {
            personal: true,
            ..Default::default()
        };
        let e = resolve(&req, all.clone()).unwrap_err().to_string();
        assert!(e.starts_with("limit: "), "{e}");
        assert_eq!(
            resolve(&req, all[1..].to_vec()).unwrap().len(),
            MAX_MAILBOXES
        );
    }

    fn set(r: &[(u32, u32)]) -> pb::UidSet {
        pb::UidSet {
            ranges: r
                .iter()
                .map(|&(first, last)| pb::UidRange { first, last })
                .collect(),
        }
    }

    fn uid_key(r: &[(u32, u32)]) -> pb::SearchKey {
        pb::SearchKey {
            key: Some(Key::Uid(set(r))),
        }
    }

    #[test]
    fn message_numbers_are_each_mailboxs_own() {
        let uids = [3, 4, 5, 9, 10, 20];
        let seq = |r: &[(u32, u32)]| pb::SearchKey {
            key: Some(Key::Seq(set(r))),
        };
        // 2:4 is UIDs 4, 5, 9; "*" is the last message; 5:* is 5:6.
        assert_eq!(
            resolve_key(&seq(&[(2, 4)]), &uids, 20),
            uid_key(&[(4, 5), (9, 9)])
        );
        assert_eq!(
            resolve_key(&seq(&[(0, 0)]), &uids, 20),
            uid_key(&[(20, 20)])
        );
        assert_eq!(
            resolve_key(&seq(&[(5, 0)]), &uids, 20),
            uid_key(&[(10, 10), (20, 20)])
        );
        // Past the last message: none; in an empty mailbox: none.
        assert_eq!(resolve_key(&seq(&[(7, 9)]), &uids, 20), uid_key(&[]));
        assert_eq!(resolve_key(&seq(&[(1, 0)]), &[], 0), uid_key(&[]));
        // Inside NOT, AND and OR.
        let not = pb::SearchKey {
            key: Some(Key::Not(Box::new(seq(&[(1, 1)])))),
        };
        assert_eq!(
            resolve_key(&not, &uids, 20),
            pb::SearchKey {
                key: Some(Key::Not(Box::new(uid_key(&[(3, 3)]))))
            }
        );
        assert_eq!(
            relative(&not),
            Relative {
                numbers: true,
                star: false
            }
        );
    }

    #[test]
    fn star_is_the_largest_uid_in_use() {
        let star = |r: &[(u32, u32)]| pb::SearchKey {
            key: Some(Key::UidStar(set(r))),
        };
        // UID 15:* with 20 the largest is 15:20; 30:* is 20:30 (RFC 9051
        // 9: the range holds the largest UID whichever end is larger).
        assert_eq!(
            resolve_key(&star(&[(0, 15)]), &[], 20),
            uid_key(&[(15, 20)])
        );
        assert_eq!(
            resolve_key(&star(&[(0, 30)]), &[], 20),
            uid_key(&[(20, 30)])
        );
        assert_eq!(resolve_key(&star(&[(0, 0)]), &[], 20), uid_key(&[(20, 20)]));
        // An empty mailbox: "*" alone matches nothing.
        assert_eq!(resolve_key(&star(&[(0, 0)]), &[], 0), uid_key(&[]));
        assert_eq!(
            relative(&star(&[(0, 0)])),
            Relative {
                numbers: false,
                star: true
            }
        );
    }

    #[test]
    fn summary_of_matches() {
        let s = summary(&[2, 5, 9], &[7, 30, 11]);
        assert_eq!((s.count, s.min, s.max), (3, 2, 9));
        assert_eq!((s.min_modseq, s.max_modseq, s.matched_modseq), (7, 11, 30));
        assert_eq!(summary(&[], &[]).count, 0);
    }
}
