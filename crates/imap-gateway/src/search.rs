//! SEARCH keys (RFC 9051 6.4.4) translated into the store's search tree.
//! Keys that depend on this session (sequence numbers, \Recent, NEW/OLD)
//! are resolved here into UID sets; everything else is evaluated by the
//! store.

use chrono::Datelike;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::search::SearchKey;
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;

use crate::view::View;

/// Deepest nesting accepted (the parser bounds it too).
const MAX_DEPTH: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search key nested too deeply")]
    TooDeep,
    #[error("search key not supported: {0}")]
    Unsupported(&'static str),
}

fn key(k: Key) -> pb::SearchKey {
    pb::SearchKey { key: Some(k) }
}

fn text(a: &AString<'_>) -> String {
    String::from_utf8_lossy(a.as_ref()).into_owned()
}

fn header(name: &str, a: &AString<'_>) -> pb::SearchKey {
    key(Key::Header(pb::HeaderMatch {
        name: name.into(),
        value: text(a),
    }))
}

fn day(d: &imap_codec::imap_types::datetime::NaiveDate) -> i64 {
    let d: &chrono::NaiveDate = d.as_ref();
    let days = d.num_days_from_ce() as i64 - 719_163; // 1970-01-01
    days * 86_400
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn uids(list: impl IntoIterator<Item = u32>) -> pb::SearchKey {
    key(Key::Uid(pb::UidSet::of(list)))
}

/// The UIDs this session holds \Recent for.
fn recent(view: Option<&View>) -> Vec<u32> {
    view.map(|v| v.recent.iter().copied().collect())
        .unwrap_or_default()
}

/// Translates the criteria (an implicit AND) for the store.
pub fn translate(criteria: &[SearchKey<'_>], view: &View) -> Result<pb::SearchKey, SearchError> {
    translate_in(criteria, Some(view))
}

/// Translates the criteria for mailboxes other than the selected one
/// (MULTISEARCH, RFC 7377): message numbers and "*" in UID sets are each
/// mailbox's own (RFC 9051 9), resolved by the store in each mailbox it
/// searches (`seq`, `uid_star`; 0 stands for "*"); \Recent is no
/// message's (it is the selecting session's).
pub fn translate_unselected(criteria: &[SearchKey<'_>]) -> Result<pb::SearchKey, SearchError> {
    translate_in(criteria, None)
}

fn translate_in(
    criteria: &[SearchKey<'_>],
    view: Option<&View>,
) -> Result<pb::SearchKey, SearchError> {
    let keys = criteria
        .iter()
        .map(|k| one(k, view, 0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(key(Key::And(pb::SearchKeyList { keys })))
}

/// A set as the store resolves it per mailbox: "*" is 0.
fn relative(set: &imap_codec::imap_types::sequence::SequenceSet) -> pb::UidSet {
    pb::UidSet {
        ranges: imap_wire::seq::ranges(set, 0)
            .into_iter()
            .map(|(first, last)| pb::UidRange { first, last })
            .collect(),
    }
}

/// No message.
fn none() -> pb::SearchKey {
    key(Key::Not(Box::new(key(Key::All(true)))))
}

/// Whether the criteria use MODSEQ (RFC 7162 3.1.5): then the response
/// names the highest MODSEQ of what matched.
pub fn has_modseq(criteria: &[SearchKey<'_>]) -> bool {
    fn any(k: &SearchKey<'_>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match k {
            SearchKey::ModSequence { .. } => true,
            SearchKey::And(ks) => ks.as_ref().iter().any(|k| any(k, depth + 1)),
            SearchKey::Or(a, b) => any(a, depth + 1) || any(b, depth + 1),
            SearchKey::Not(a) => any(a, depth + 1),
            _ => false,
        }
    }
    criteria.iter().any(|k| any(k, 0))
}

fn one(k: &SearchKey<'_>, view: Option<&View>, depth: usize) -> Result<pb::SearchKey, SearchError> {
    if depth > MAX_DEPTH {
        return Err(SearchError::TooDeep);
    }
    let flag = |f: &str| key(Key::Flag(f.into()));
    let unflag = |f: &str| key(Key::Unflag(f.into()));
    Ok(match k {
        SearchKey::And(ks) => key(Key::And(pb::SearchKeyList {
            keys: ks
                .as_ref()
                .iter()
                .map(|k| one(k, view, depth + 1))
                .collect::<Result<_, _>>()?,
        })),
        SearchKey::Or(a, b) => key(Key::Or(pb::SearchKeyList {
            keys: vec![one(a, view, depth + 1)?, one(b, view, depth + 1)?],
        })),
        SearchKey::Not(a) => key(Key::Not(Box::new(one(a, view, depth + 1)?))),
        SearchKey::All => key(Key::All(true)),
        SearchKey::SequenceSet(set) if view.is_none() => key(Key::Seq(relative(set))),
        SearchKey::Uid(set) if view.is_none() => {
            let set = relative(set);
            if set.ranges.iter().any(|r| r.first == 0 || r.last == 0) {
                key(Key::UidStar(set))
            } else {
                key(Key::Uid(set))
            }
        }
        SearchKey::Recent | SearchKey::New if view.is_none() => none(),
        SearchKey::Old if view.is_none() => key(Key::All(true)),
        SearchKey::SequenceSet(set) => {
            let Some(view) = view else {
                return Ok(key(Key::Seq(relative(set))));
            };
            let nums = imap_wire::seq::ranges(set, view.exists());
            let mut list = Vec::new();
            for (a, b) in nums {
                for n in a..=b.min(view.exists()) {
                    if let Some(m) = view.msg_at((n as usize).wrapping_sub(1)) {
                        list.push(m.uid);
                    }
                }
            }
            uids(list)
        }
        SearchKey::Uid(set) => match view {
            Some(view) => uids(
                view.uid_positions(set)
                    .into_iter()
                    .filter_map(|i| view.uid_at(i)),
            ),
            None => none(),
        },
        SearchKey::Answered => flag("\\Answered"),
        SearchKey::Deleted => flag("\\Deleted"),
        SearchKey::Draft => flag("\\Draft"),
        SearchKey::Flagged => flag("\\Flagged"),
        SearchKey::Seen => flag("\\Seen"),
        SearchKey::Unanswered => unflag("\\Answered"),
        SearchKey::Undeleted => unflag("\\Deleted"),
        SearchKey::Undraft => unflag("\\Draft"),
        SearchKey::Unflagged => unflag("\\Flagged"),
        SearchKey::Unseen => unflag("\\Seen"),
        SearchKey::Keyword(a) => flag(a.inner()),
        SearchKey::Unkeyword(a) => unflag(a.inner()),
        SearchKey::Recent => uids(recent(view)),
        SearchKey::Old => key(Key::Not(Box::new(uids(recent(view))))),
        SearchKey::New => key(Key::And(pb::SearchKeyList {
            keys: vec![uids(recent(view)), unflag("\\Seen")],
        })),
        SearchKey::Bcc(a) => header("bcc", a),
        SearchKey::Cc(a) => header("cc", a),
        SearchKey::From(a) => header("from", a),
        SearchKey::To(a) => header("to", a),
        SearchKey::Subject(a) => header("subject", a),
        SearchKey::Header(name, value) => {
            // SAVEDATE and OBJECTID keys, as imap-wire rewrote them.
            use imap_wire::ext as x;
            let n = text(name);
            let v = text(value);
            match n.as_str() {
                x::SAVED_BEFORE | x::SAVED_ON | x::SAVED_SINCE => {
                    let d = chrono::NaiveDate::parse_from_str(&v, "%d-%b-%Y")
                        .map_err(|_| SearchError::Unsupported("a date that is not dd-Mon-yyyy"))?;
                    let t = d
                        .and_hms_opt(0, 0, 0)
                        .map_or(0, |t| t.and_utc().timestamp());
                    key(match n.as_str() {
                        x::SAVED_BEFORE => Key::SavedBefore(t),
                        x::SAVED_ON => Key::SavedOn(t),
                        _ => Key::SavedSince(t),
                    })
                }
                // EMAILIDs are "M" and the blob id (see FETCH EMAILID).
                x::EMAIL_ID => key(Key::EmailId(v.strip_prefix('M').unwrap_or("-").to_string())),
                // No thread ids are kept (THREADID is NIL): none match.
                x::THREAD_ID => key(Key::Not(Box::new(key(Key::All(true))))),
                _ => header(&n, value),
            }
        }
        SearchKey::Body(a) => key(Key::Body(text(a))),
        SearchKey::Text(a) => key(Key::Text(text(a))),
        SearchKey::Before(d) => key(Key::Before(day(d))),
        SearchKey::On(d) => key(Key::On(day(d))),
        SearchKey::Since(d) => key(Key::Since(day(d))),
        SearchKey::SentBefore(d) => key(Key::SentBefore(day(d))),
        SearchKey::SentOn(d) => key(Key::SentOn(day(d))),
        SearchKey::SentSince(d) => key(Key::SentSince(day(d))),
        SearchKey::Larger(n) => key(Key::Larger(*n as u64)),
        SearchKey::Smaller(n) => key(Key::Smaller(*n as u64)),
        SearchKey::ModSequence { modseq, .. } => key(Key::Modseq(*modseq)),
        // WITHIN (RFC 5032 3): seconds before now, by INTERNALDATE.
        SearchKey::Older(n) => key(Key::ArrivedBefore(now() - i64::from(n.get()))),
        SearchKey::Younger(n) => key(Key::ArrivedSince(now() - i64::from(n.get()))),
        #[allow(unreachable_patterns)]
        _ => return Err(SearchError::Unsupported("this search key")),
    })
}
