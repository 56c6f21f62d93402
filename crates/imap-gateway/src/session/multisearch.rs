//! ESEARCH (MULTISEARCH, RFC 7377): one search over several mailboxes, in
//! the authenticated and the selected state, answered with one untagged
//! `ESEARCH` per mailbox with a match, correlated by TAG, MAILBOX and
//! UIDVALIDITY and always in UIDs (RFC 7377 2). The store resolves the
//! mailbox filters (RFC 5465 6) and searches every mailbox in one call;
//! message numbers and `*` are each mailbox's own (RFC 9051 9), the
//! selected mailbox's as this session numbers it when it is searched
//! alone. MIN, MAX and COUNT alone come from the store without the UIDs.
//!
//! UPDATE (RFC 5267 4) keeps a search context as SEARCH RETURN (UPDATE)
//! does, its updates correlated as the first answer. Refused with BAD:
//! UPDATE unless the selected mailbox alone is searched (a context is
//! the selected mailbox's), SAVE likewise (RFC 7377 2), and a saved
//! result `$` (it holds the selected mailbox's messages).
//! More mailboxes than the store searches at once is NO [LIMIT]. A
//! mailbox the filters name that does not exist is passed over, as a
//! mailbox without a match is (no response for it).

use imap_wire::ext::{Esearch, SearchSource};

use super::*;

const BADCHARSET: &str = "[BADCHARSET (US-ASCII UTF-8)] Charset not supported";

impl Session {
    /// ESEARCH; with SAVE, `$` is replaced whatever the outcome (RFC 5182
    /// 2.1): by the result, empty when nothing matched, and emptied when
    /// the command fails once RETURN was read.
    pub(super) async fn esearch(&mut self, tag: &str, es: Esearch) -> Done {
        let save = es.ret.as_ref().is_some_and(|r| r.save);
        if save {
            self.saved.clear();
        }
        let done = self.esearch_saving(tag, es).await;
        if save && done.kind != "OK" {
            self.saved.clear();
        }
        done
    }

    async fn esearch_saving(&mut self, tag: &str, es: Esearch) -> Done {
        let ret = es.ret.unwrap_or_default();
        let selected = self.view.as_ref().map(|v| v.name.clone());
        let sources = if es.sources.is_empty() {
            vec![SearchSource::Selected]
        } else {
            es.sources
        };
        let selected_only = sources
            .iter()
            .all(|s| matches!(s, SearchSource::Selected | SearchSource::SelectedDelayed));
        if selected_only && selected.is_none() {
            return Done::bad("No mailbox selected: name the mailboxes with ESEARCH IN (...)");
        }
        // CONTEXT=SEARCH (RFC 5267 4): a context is the selected
        // mailbox's, kept as SEARCH RETURN (UPDATE) keeps one.
        if ret.update && !selected_only {
            return Done::bad("UPDATE only when the selected mailbox alone is searched (RFC 5267)");
        }
        if ret.update && self.context_tag_in_use(tag) {
            return Done::bad("Tag reuse: that tag already has a search context");
        }
        if ret.save && !selected_only {
            return Done::bad("SAVE only when the selected mailbox alone is searched (RFC 7377 2)");
        }
        let bytes = imap_wire::ext::rewrite_search_extras(&es.search).unwrap_or(es.search);
        let decoded = {
            use imap_codec::decode::Decoder;
            match CommandCodec::default().decode(&bytes) {
                Ok((
                    [],
                    Command {
                        body:
                            CommandBody::Search {
                                charset, criteria, ..
                            },
                        ..
                    },
                )) => Some((charset, criteria)),
                _ => None,
            }
        };
        let Some((charset, criteria)) = decoded else {
            if has_saved_marker(&bytes) {
                return Done::bad("ESEARCH takes no saved result ($): it is one mailbox's");
            }
            return Done::bad("Syntax error in ESEARCH criteria");
        };
        if let Some(c) = &charset {
            let c = c.as_ref();
            if !c.eq_ignore_ascii_case("UTF-8") && !c.eq_ignore_ascii_case("US-ASCII") {
                return Done::no(BADCHARSET);
            }
        }
        let criteria = criteria.as_ref();
        let key = match (&self.view, selected_only) {
            (Some(view), true) => crate::search::translate(criteria, view),
            _ => crate::search::translate_unselected(criteria),
        };
        let key = match key {
            Ok(k) => k,
            Err(e) => return Done::bad(e.to_string()),
        };
        let with_modseq = crate::search::has_modseq(criteria);
        if with_modseq {
            // RFC 7162 3.1: a search by MODSEQ enables CONDSTORE.
            self.condstore = true;
        }
        // MIN, MAX and COUNT alone need no list of UIDs from the store
        // (but the selected mailbox's, which the session filters).
        let summary_only = (ret.min || ret.max || ret.count)
            && !(ret.all || ret.save || ret.update)
            && ret.partial.is_none();
        let mut req = pb::MultiSearchRequest {
            key: Some(key),
            with_modseqs: with_modseq,
            summary_only,
            selected: selected.clone().unwrap_or_default(),
            // An UPDATE context starts even from no match.
            with_empty: ret.update,
            ..Default::default()
        };
        let context_key = ret.update.then(|| req.key.clone()).flatten();
        let names = |raw: Vec<Vec<u8>>| -> Vec<String> {
            // A name that cannot be decoded names no mailbox: passed over
            // as a missing one is.
            raw.into_iter()
                .filter_map(|r| Mailbox::try_from(r).ok())
                .filter_map(|m| self.mailbox_name(&m).ok())
                .collect()
        };
        for s in sources {
            match s {
                SearchSource::Selected | SearchSource::SelectedDelayed => {
                    req.mailboxes.extend(selected.clone());
                }
                SearchSource::Inboxes => req.inboxes = true,
                SearchSource::Personal => req.personal = true,
                SearchSource::Subscribed => req.subscribed = true,
                SearchSource::Subtree(r) => req.subtrees.extend(names(r)),
                SearchSource::SubtreeOne(r) => req.subtrees_one.extend(names(r)),
                SearchSource::Mailboxes(r) => req.mailboxes.extend(names(r)),
            }
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let results = match c.multi_search(req).await {
            Ok(r) => r.into_inner().results,
            Err(s) if s.code() == Code::InvalidArgument && s.message().starts_with("limit: ") => {
                return Done::no(format!("[LIMIT] {}", &s.message()["limit: ".len()..]));
            }
            Err(s) => return store_no(&s),
        };
        for r in results {
            if let Some(s) = &r.summary {
                let mut line = imap_wire::ext::esearch_mailbox_summary(
                    tag,
                    &r.mailbox,
                    self.utf8,
                    r.uid_validity,
                    &ret,
                    (s.min, s.max, s.count),
                );
                if with_modseq && s.count > 0 {
                    let m = if ret.count {
                        s.matched_modseq
                    } else {
                        let min = if ret.min { s.min_modseq } else { 0 };
                        let max = if ret.max { s.max_modseq } else { 0 };
                        min.max(max)
                    };
                    line.push_str(&format!(" MODSEQ {m}"));
                }
                if s.count > 0 {
                    self.push(&line);
                }
                continue;
            }
            let mut uids = r.uids;
            let mut modseqs = r.modseqs;
            // In the selected mailbox (the same one: its UIDVALIDITY),
            // only the messages this session was told of (new ones are
            // announced first, by EXISTS).
            if let Some(view) = self
                .view
                .as_ref()
                .filter(|v| v.name == r.mailbox && v.uid_validity() == r.uid_validity)
            {
                let known: Vec<bool> = uids.iter().map(|&u| view.position(u).is_some()).collect();
                let mut k = known.iter();
                uids.retain(|_| k.next() == Some(&true));
                if !modseqs.is_empty() {
                    let mut k = known.iter();
                    modseqs.retain(|_| k.next() == Some(&true));
                }
                if ret.save {
                    // SEARCHRES (RFC 5182), allowed for the selected
                    // mailbox alone: the result, as UIDs.
                    self.saved = uids.clone();
                }
                if let Some(key) = context_key.clone() {
                    let head = imap_wire::ext::esearch_mailbox_summary(
                        tag,
                        &r.mailbox,
                        self.utf8,
                        r.uid_validity,
                        &Default::default(),
                        (0, 0, 0),
                    );
                    self.add_esearch_context(tag, key, &uids, head);
                }
            }
            if uids.is_empty() || ret.save_only() {
                continue;
            }
            let mut line = imap_wire::ext::esearch_mailbox_response(
                tag,
                &r.mailbox,
                self.utf8,
                r.uid_validity,
                &ret,
                &uids,
            );
            if with_modseq {
                line.push_str(&format!(" MODSEQ {}", modseq_of(&ret, &modseqs)));
            }
            self.push(&line);
        }
        Done::ok("ESEARCH completed")
    }
}

/// RFC 7162 3.1.5: the highest MODSEQ of the messages returned, of MIN
/// and MAX alone when only they are asked for. `modseqs` are the matches'
/// in UID order.
fn modseq_of(ret: &imap_wire::ext::SearchReturn, modseqs: &[u64]) -> u64 {
    if ret.all || ret.count || ret.is_empty() || ret.partial.is_some() {
        return modseqs.iter().copied().max().unwrap_or(0);
    }
    let mut ends = Vec::new();
    if ret.min {
        ends.extend(modseqs.first());
    }
    if ret.max {
        ends.extend(modseqs.last());
    }
    ends.into_iter().copied().max().unwrap_or(0)
}

/// Whether the command line holds SEARCHRES's `$` as a search key.
fn has_saved_marker(msg: &[u8]) -> bool {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(&[]);
    line.split(|&b| matches!(b, b' ' | b'(' | b')' | b'\r'))
        .any(|t| t == b"$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modseq_of_what_is_returned() {
        let all = imap_wire::ext::SearchReturn::default();
        assert_eq!(modseq_of(&all, &[5, 9, 7]), 9);
        let min = imap_wire::ext::SearchReturn {
            min: true,
            ..Default::default()
        };
        assert_eq!(modseq_of(&min, &[5, 9, 7]), 5);
        let max = imap_wire::ext::SearchReturn {
            max: true,
            ..Default::default()
        };
        assert_eq!(modseq_of(&max, &[5, 9, 7]), 7);
        assert_eq!(modseq_of(&all, &[]), 0);
    }

    #[test]
    fn saved_marker_is_a_key_not_text() {
        assert!(has_saved_marker(b"a UID SEARCH $\r\n"));
        assert!(has_saved_marker(b"a UID SEARCH (UID $)\r\n"));
        assert!(!has_saved_marker(b"a UID SEARCH SUBJECT \"$\"\r\n"));
        assert!(!has_saved_marker(b"a UID SEARCH SUBJECT $5\r\n"));
    }
}
