//! SEARCH evaluation (RFC 9051 6.4.4) over the rows of one mailbox.
//!
//! Flags, sizes, dates and UIDs come from the message rows; the header keys
//! the summary indexes (FROM, TO, CC, BCC, SUBJECT, MESSAGE-ID) from the
//! stored summary; any other HEADER and BODY/TEXT from the raw message. The
//! store loads only what the key tree needs ([`needs`]).

use std::sync::Arc;

use mail_summary::search_text::{self, BodySearch, header_len};

use crate::search_cache::BodyCache;
use mail_types::{SystemFlag, UidSetRanges};
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;
use prost::Message as _;

use crate::error::{Result, StoreError};
use crate::model::{MetaRow, SearchRow, split_keywords};

/// Deepest key nesting evaluated (NOT/AND/OR).
pub const MAX_DEPTH: usize = 64;

#[derive(Default, Clone, Copy)]
pub struct Needs {
    pub summary: bool,
    pub data: bool,
}

const SUMMARY_HEADERS: [&str; 6] = ["from", "to", "cc", "bcc", "subject", "message-id"];

pub fn needs(key: &pb::SearchKey) -> Needs {
    let mut n = Needs::default();
    walk(key, &mut n, 0);
    n
}

fn walk(key: &pb::SearchKey, n: &mut Needs, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match &key.key {
        Some(Key::And(l)) | Some(Key::Or(l)) => l.keys.iter().for_each(|k| walk(k, n, depth + 1)),
        Some(Key::Not(k)) => walk(k, n, depth + 1),
        Some(Key::Header(h)) => {
            if SUMMARY_HEADERS.contains(&h.name.to_ascii_lowercase().as_str())
                && !h.value.is_empty()
            {
                n.summary = true;
            } else {
                n.data = true;
            }
        }
        Some(Key::Body(_)) => n.data = true,
        Some(Key::Text(_)) => {
            n.data = true;
            n.summary = true;
        }
        Some(Key::SentBefore(_)) | Some(Key::SentOn(_)) | Some(Key::SentSince(_)) => {
            n.summary = true
        }
        _ => {}
    }
}

/// A body as BODY, TEXT and HEADER match it, what [`BodyCache`] keeps:
/// its raw header section (with the blank line that ends it) and its
/// body decoded ([`BodySearch`]).
#[derive(Debug, Default)]
pub struct SearchForm {
    pub header: Vec<u8>,
    pub body: BodySearch,
}

impl SearchForm {
    /// The form of a raw message, holding no more memory than its bytes
    /// (the decoder reserves room for a whole body in `raw`, of which the
    /// base64 bodies left out may be nearly all: kept, a message with a
    /// large attachment would hold it).
    pub fn of(data: &[u8]) -> SearchForm {
        let mut body = search_text::body_search(data);
        body.text.shrink_to_fit();
        body.raw.shrink_to_fit();
        body.names.shrink_to_fit();
        SearchForm {
            header: data[..header_len(data)].to_vec(),
            body,
        }
    }
}

/// Bodies' forms known before evaluating (found in the cache, their rows
/// read without their bytes), by blob id.
pub type Forms = std::collections::HashMap<String, Arc<SearchForm>>;

struct Msg<'a> {
    row: &'a MetaRow,
    summary: Option<pb::MessageSummary>,
    data: Option<&'a [u8]>,
    /// The body's form: given (the row came without its bytes), or
    /// found in `cache` or computed from `data` (and kept there) on first
    /// use by BODY or TEXT.
    form: std::cell::OnceCell<Arc<SearchForm>>,
    cache: &'a BodyCache,
}

impl Msg<'_> {
    /// Whether the row has its body (its bytes, or its form).
    fn has_body(&self) -> bool {
        self.data.is_some() || self.form.get().is_some()
    }

    /// The raw header section, from the bytes or the form.
    fn header(&self) -> Option<&[u8]> {
        match (self.data, self.form.get()) {
            (Some(d), _) => Some(&d[..header_len(d)]),
            (None, Some(f)) => Some(&f.header),
            (None, None) => None,
        }
    }

    /// The decoded text parts, the raw body without base64 bodies and
    /// the decoded file names ([`mail_summary::search_text`], which the
    /// full-text index is built from too).
    fn body(&self) -> &BodySearch {
        &self
            .form
            .get_or_init(|| {
                let Some(data) = self.data else {
                    return Arc::default();
                };
                self.cache
                    .get_or_decode(&self.row.blob_id, || SearchForm::of(data))
            })
            .body
    }

    /// BODY: the decoded text (RFC 9051 6.4.4) or the parts' decoded file
    /// names, or else the raw body (ASCII case folded) outside
    /// base64-encoded parts.
    fn body_contains(&self, needle: &str) -> bool {
        if !self.has_body() {
            return false;
        }
        let b = self.body();
        let lower = needle.to_lowercase();
        b.text.contains(&lower)
            || b.names.contains(&lower)
            || contains_ci(&b.raw, needle.as_bytes())
    }
}

/// The UIDs of `rows` that `key` matches. A row read without its bytes
/// has its body's form in `known` (by blob id); decoded bodies come from
/// and go to `cache` (each row's `blob_id` names its body).
pub fn evaluate(
    key: &pb::SearchKey,
    highest_modseq: i64,
    rows: Vec<SearchRow>,
    cache: &BodyCache,
    known: &Forms,
) -> Result<pb::SearchResponse> {
    let mut uids = Vec::new();
    for (row, summary, data) in &rows {
        let summary = summary
            .as_ref()
            .map(|s| pb::MessageSummary::decode(s.as_slice()))
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored summary: {e}")))?;
        let msg = Msg {
            row,
            summary,
            data: data.as_deref(),
            form: std::cell::OnceCell::new(),
            cache,
        };
        if data.is_none()
            && let Some(f) = known.get(&row.blob_id)
        {
            let _ = msg.form.set(f.clone());
        }
        if matches(key, &msg, 0)? {
            uids.push(row.uid as u32);
        }
    }
    Ok(pb::SearchResponse {
        uids,
        highest_modseq: highest_modseq as u64,
    })
}

fn matches(key: &pb::SearchKey, m: &Msg<'_>, depth: usize) -> Result<bool> {
    if depth > MAX_DEPTH {
        return Err(StoreError::Invalid("search key nested too deeply".into()));
    }
    let r = m.row;
    Ok(match &key.key {
        None | Some(Key::All(_)) => true,
        Some(Key::And(l)) => {
            for k in &l.keys {
                if !matches(k, m, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        Some(Key::Or(l)) => {
            for k in &l.keys {
                if matches(k, m, depth + 1)? {
                    return Ok(true);
                }
            }
            false
        }
        Some(Key::Not(k)) => !matches(k, m, depth + 1)?,
        Some(Key::Uid(set)) => UidSetRanges::from(set).contains(r.uid as u32),
        Some(Key::Flag(f)) => has_flag(r, f),
        Some(Key::Unflag(f)) => !has_flag(r, f),
        Some(Key::Header(h)) => header_matches(m, &h.name, &h.value),
        Some(Key::Body(s)) => m.body_contains(s),
        // TEXT: the header (raw and as decoded for SEARCH) or the body.
        Some(Key::Text(s)) => {
            m.body_contains(s)
                || m.header().is_some_and(|h| contains_ci(h, s.as_bytes()))
                || m.summary
                    .as_ref()
                    .and_then(|x| x.search.as_ref())
                    .is_some_and(|f| {
                        let n = s.to_lowercase();
                        [&f.from, &f.to, &f.cc, &f.bcc, &f.subject]
                            .iter()
                            .any(|v| v.to_lowercase().contains(&n))
                    })
        }
        Some(Key::Before(t)) => day(r.internal_date, r.internal_tz) < *t,
        Some(Key::On(t)) => day(r.internal_date, r.internal_tz) == *t,
        Some(Key::Since(t)) => day(r.internal_date, r.internal_tz) >= *t,
        Some(Key::SentBefore(t)) => sent_day(m).is_some_and(|d| d < *t),
        Some(Key::SentOn(t)) => sent_day(m).is_some_and(|d| d == *t),
        Some(Key::SentSince(t)) => sent_day(m).is_some_and(|d| d >= *t),
        Some(Key::SavedBefore(t)) => saved_day(r) < *t,
        Some(Key::SavedOn(t)) => saved_day(r) == *t,
        Some(Key::SavedSince(t)) => saved_day(r) >= *t,
        Some(Key::EmailId(id)) => r.blob_id == *id,
        Some(Key::ArrivedBefore(t)) => r.internal_date < *t,
        Some(Key::ArrivedSince(t)) => r.internal_date >= *t,
        Some(Key::Larger(n)) => r.size as u64 > *n,
        Some(Key::Smaller(n)) => (r.size as u64) < *n,
        Some(Key::Modseq(n)) => r.modseq as u64 >= *n,
        // MULTISEARCH resolves these per mailbox before evaluating.
        Some(Key::Seq(_)) | Some(Key::UidStar(_)) => {
            return Err(StoreError::Invalid(
                "message numbers and \"*\" are the selected mailbox's: the gateway resolves them"
                    .into(),
            ));
        }
    })
}

fn has_flag(r: &MetaRow, flag: &str) -> bool {
    match SystemFlag::parse(flag) {
        Some(f) => r.flags & f.bit() != 0,
        None => split_keywords(&r.keywords)
            .iter()
            .any(|k| k.eq_ignore_ascii_case(flag)),
    }
}

/// The start (UTC midnight, unix seconds) of the day a time falls on in its
/// own zone: RFC 9051 date keys disregard time and timezone.
/// The (UTC) day a message was saved into its mailbox; its INTERNALDATE's
/// day for messages from before save dates were kept.
fn saved_day(r: &MetaRow) -> i64 {
    match r.save_date {
        Some(t) => day(t, 0),
        None => day(r.internal_date, r.internal_tz),
    }
}

fn day(t: i64, tz_minutes: i64) -> i64 {
    let local = t + tz_minutes * 60;
    local.div_euclid(86_400) * 86_400
}

/// The date of the Date: header in the header's own zone (RFC 9051
/// 6.4.4: SENT* keys disregard time and timezone).
fn sent_day(m: &Msg<'_>) -> Option<i64> {
    let s = m.summary.as_ref()?.search.as_ref()?;
    (s.sent_date != 0).then(|| day(s.sent_date, i64::from(s.sent_tz_minutes)))
}

fn header_matches(m: &Msg<'_>, name: &str, value: &str) -> bool {
    let lname = name.to_ascii_lowercase();
    if !value.is_empty()
        && let Some(s) = m.summary.as_ref().and_then(|s| s.search.as_ref())
    {
        let field = match lname.as_str() {
            "from" => Some(&s.from),
            "to" => Some(&s.to),
            "cc" => Some(&s.cc),
            "bcc" => Some(&s.bcc),
            "subject" => Some(&s.subject),
            "message-id" => Some(&s.message_id),
            _ => None,
        };
        if let Some(f) = field {
            return contains_ci(f.as_bytes(), value.as_bytes());
        }
    }
    let Some(header) = m.header() else {
        return false;
    };
    search_text::header_fields(header)
        .iter()
        .any(|(n, v)| *n == lname && contains_ci(v.as_bytes(), value.as_bytes()))
}

/// ASCII case-insensitive substring test; an empty needle always matches.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_ignore_time_and_zone() {
        // 2024-01-01T23:30:00Z in +0100 is 2024-01-02 local.
        let t = 1_704_151_800;
        assert_eq!(day(t, 0), 1_704_067_200);
        assert_eq!(day(t, 60), 1_704_153_600);
        assert_eq!(day(t, -120), 1_704_067_200);
    }

    #[test]
    fn substring_is_case_insensitive() {
        assert!(contains_ci(b"Hello World", b"world"));
        assert!(!contains_ci(b"Hello", b"hello!"));
        assert!(contains_ci(b"", b""));
    }
}
