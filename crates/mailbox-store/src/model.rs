//! Row types shared by both backends.

use mailbox_api::pb;

/// An account's primary key. Obtained only from a verified session token or
/// an Admin call, never from a caller-supplied id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(pub i64);

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MailboxRow {
    pub id: i64,
    pub name: String,
    pub special_use: i64,
    pub uid_validity: i64,
    pub uid_next: i64,
    pub highest_modseq: i64,
    pub recent_uid: i64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MsgRow {
    pub uid: i64,
    pub flags: i64,
    pub keywords: String,
    pub modseq: i64,
    pub size: i64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MetaRow {
    pub uid: i64,
    pub flags: i64,
    pub keywords: String,
    pub modseq: i64,
    pub size: i64,
    pub internal_date: i64,
    pub internal_tz: i64,
    pub blob_id: String,
    /// SAVEDATE (RFC 8514); NULL for messages from before it was kept.
    pub save_date: Option<i64>,
}

/// A resolved delivery recipient.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RecipientRow {
    pub account_id: i64,
    pub address: String,
    pub disabled: bool,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub quota_messages: i64,
    pub message_count: i64,
}

impl RecipientRow {
    /// Whether one more message of `size` octets goes past a limit
    /// (storage or message count, RFC 9208 5.1-5.2).
    pub fn over_quota(&self, size: i64) -> bool {
        over_quota(
            (self.quota_bytes, self.used_bytes + size),
            (self.quota_messages, self.message_count + 1),
        )
    }
}

/// Whether usage after a change, `(limit, used)` for storage and for the
/// message count, is past a limit (0 is unlimited).
pub fn over_quota(bytes: (i64, i64), messages: (i64, i64)) -> bool {
    (bytes.0 > 0 && bytes.1 > bytes.0) || (messages.0 > 0 && messages.1 > messages.0)
}

/// What one Deliver stores: the message bytes (trace lines included), their
/// hash and parsed summary.
pub struct NewBlob {
    pub id: String,
    pub data: Vec<u8>,
    pub summary: Vec<u8>,
    /// Protobuf `SortKeys` (SORT and THREAD).
    pub sort_keys: Vec<u8>,
    /// What SEARCH BODY, TEXT and HEADER match, folded, for the full-text
    /// index (`mail_summary::search_text::index_text`); on PostgreSQL as
    /// it is stored there, without white space (`fts_query::joined`).
    pub text: String,
    /// `text`'s words and long words for the word index (PostgreSQL;
    /// `fts_query::index_words`), computed with it off the reactor;
    /// empty on SQLite.
    pub words: (String, String),
    /// `data` compressed, and its codec, when that is smaller (see
    /// `blob_codec::compress`).
    pub packed: Option<(Vec<u8>, i16)>,
}

impl NewBlob {
    /// What `blobs.data` keeps, and its `blobs.data_codec`.
    pub fn stored(&self) -> (&[u8], i16) {
        match &self.packed {
            Some((packed, codec)) => (packed, *codec),
            None => (&self.data, crate::blob_codec::RAW),
        }
    }
}

/// One message of an APPEND as a client sends it.
pub struct NewMessage {
    pub flags: pb::Flags,
    /// INTERNALDATE (unix seconds, zone minutes); `None`: now.
    pub internal_date: Option<(i64, i32)>,
    pub data: Vec<u8>,
}

/// One message of an APPEND, ready to store.
pub struct AppendItem<'a> {
    pub flags: &'a pb::Flags,
    pub date: (i64, i64),
    pub blob: &'a NewBlob,
}

/// Keywords are stored as one space-separated, sorted, de-duplicated string.
pub fn join_keywords(k: &[String]) -> String {
    let mut v: Vec<&str> = k
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    v.sort_unstable();
    v.dedup();
    v.join(" ")
}

pub fn split_keywords(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An account's SCRAM keys as stored: hex salt, iterations, hex StoredKey,
/// hex ServerKey.
pub type ScramColumns = (String, i64, String, String);

/// An account attribute Admin can change.
#[derive(Clone, Copy, Debug)]
pub enum AccountField<'a> {
    /// The argon2 PHC string and the SCRAM columns (salt, iterations,
    /// StoredKey, ServerKey), changed together.
    PasswordHash(&'a str, &'a ScramColumns),
    Quota(i64),
    QuotaMessages(i64),
    Disabled(bool),
}

/// A message row with, when the search needs them, its summary and raw bytes.
pub type SearchRow = (MetaRow, Option<Vec<u8>>, Option<Vec<u8>>);

/// What SORT and THREAD read of a message: its body's stored keys (NULL
/// for a body stored before they were kept).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SortRow {
    pub uid: i64,
    pub size: i64,
    pub internal_date: i64,
    pub blob_id: String,
    pub sort_keys: Option<Vec<u8>>,
}

/// A message row joined with its blob's summary and/or data (NULL when the
/// query did not ask for them).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MetaBlobRow {
    pub uid: i64,
    pub flags: i64,
    pub keywords: String,
    pub modseq: i64,
    pub size: i64,
    pub internal_date: i64,
    pub internal_tz: i64,
    pub blob_id: String,
    pub save_date: Option<i64>,
    pub summary: Option<Vec<u8>>,
    /// As kept (`blobs.data`, see `blob_codec`): `split` decodes it.
    pub data: Option<Vec<u8>>,
    /// `blobs.data_codec` (0 when `data` was not asked for).
    pub data_codec: i16,
    /// `blobs.size`: what `data` decodes to.
    pub data_size: i64,
}

/// The evaluator's rows from rows as read (`MetaBlobRow::split` each):
/// bodies are decompressed here, so callers run it where the evaluator
/// runs, off the reactor.
pub fn decode_rows(rows: Vec<MetaBlobRow>) -> crate::error::Result<Vec<SearchRow>> {
    rows.into_iter().map(MetaBlobRow::split).collect()
}

impl MetaBlobRow {
    /// The evaluator's row, with the body's raw bytes (decoded; a body
    /// that does not decode is an internal error).
    pub fn split(self) -> crate::error::Result<SearchRow> {
        let data = crate::blob_codec::decode_opt(self.data_codec, self.data, self.data_size)?;
        Ok((
            MetaRow {
                uid: self.uid,
                flags: self.flags,
                keywords: self.keywords,
                modseq: self.modseq,
                size: self.size,
                internal_date: self.internal_date,
                internal_tz: self.internal_tz,
                blob_id: self.blob_id,
                save_date: self.save_date,
            },
            self.summary,
            data,
        ))
    }
}

/// What SORT's and THREAD's cache checks (see `sort_cache`): the
/// mailbox's id, UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ, whether a message
/// of it was expunged after a MODSEQ, and the database server's start
/// (PostgreSQL; empty on SQLite): a restarted or other server may have
/// lost commits the cache saw.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SortState {
    pub id: i64,
    pub uid_validity: i64,
    pub uid_next: i64,
    pub modseq: i64,
    pub expunged_since: bool,
    pub server: String,
}

/// What a kept SORT entry was read from: its mailbox id, UIDVALIDITY,
/// server, UIDNEXT and MODSEQ.
pub struct SortKept {
    pub id: i64,
    pub uid_validity: i64,
    pub server: String,
    pub uid_next: i64,
    pub modseq: i64,
}
