//! SEARCH and UID SEARCH (RFC 9051 6.4.4), ESEARCH (RFC 4731), SEARCHRES
//! (RFC 5182), PARTIAL and UPDATE (RFC 5267 4).

use super::*;

impl Session {
    pub(super) async fn search(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'_>],
        uid: bool,
    ) -> Done {
        let update = self.search_return.is_some_and(|o| o.update);
        if update && self.context_tag_in_use(tag) {
            self.search_return = None;
            return Done::bad("Tag reuse: that tag already has a search context");
        }
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        let key = match crate::search::translate(criteria, view) {
            Ok(k) => k,
            Err(e) => return Done::bad(e.to_string()),
        };
        let mailbox = view.name.clone();
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let r = match c
            .search(pb::SearchRequest {
                mailbox,
                key: Some(key.clone()),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let Some(view) = &self.view else {
            return Done::bad("No mailbox selected");
        };
        // Only messages this session knows about (new ones are announced
        // first, by EXISTS).
        let numbers: Vec<u32> = r
            .uids
            .iter()
            .filter_map(|&u| view.position(u).map(|i| if uid { u } else { i as u32 + 1 }))
            .collect();
        // RFC 7162 3.1.5: with MODSEQ in the criteria, the highest MODSEQ
        // of the messages returned (of MIN/MAX when only they are asked).
        let modseq_of = |nums: &mut dyn Iterator<Item = &u32>| -> u64 {
            nums.filter_map(|&n| {
                if uid {
                    view.msg(n)
                } else {
                    view.msg_at(n as usize - 1)
                }
            })
            .map(|m| m.modseq)
            .max()
            .unwrap_or(0)
        };
        let with_modseq = crate::search::has_modseq(criteria) && !numbers.is_empty();
        let ret = self.search_return.take();
        let modseq_all = if with_modseq {
            modseq_of(&mut numbers.iter())
        } else {
            0
        };
        let modseq_ends = match &ret {
            Some(o) if with_modseq && !(o.all || o.count || o.is_empty()) => {
                let mut ends = Vec::new();
                if o.min {
                    ends.extend(numbers.iter().min());
                }
                if o.max {
                    ends.extend(numbers.iter().max());
                }
                modseq_of(&mut ends.into_iter())
            }
            _ => modseq_all,
        };
        if ret.is_some_and(|o| o.save) {
            // SEARCHRES (RFC 5182): remember the result, as UIDs.
            self.saved = r
                .uids
                .iter()
                .copied()
                .filter(|&u| view.position(u).is_some())
                .collect();
        }
        match ret {
            Some(opts) => {
                if !opts.save_only() {
                    let mut line = imap_wire::ext::esearch_response(tag, uid, &opts, &numbers);
                    if with_modseq {
                        line.push_str(&format!(" MODSEQ {modseq_ends}"));
                    }
                    self.push(&line);
                }
            }
            // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 6.4.4).
            None if self.rev2 => {
                let mut line = imap_wire::ext::esearch_response(
                    tag,
                    uid,
                    &imap_wire::ext::SearchReturn::default(),
                    &numbers,
                );
                if with_modseq {
                    line.push_str(&format!(" MODSEQ {modseq_all}"));
                }
                self.push(&line);
            }
            None => {
                let mut out = String::from("* SEARCH");
                for n in &numbers {
                    out.push(' ');
                    out.push_str(&n.to_string());
                }
                if with_modseq {
                    out.push_str(&format!(" (MODSEQ {modseq_all})"));
                }
                self.push(&out);
            }
        }
        if update {
            self.add_context(tag, uid, key, None, &r.uids);
        }
        Done::ok(if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        })
    }
}
