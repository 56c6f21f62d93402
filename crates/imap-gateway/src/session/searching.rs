//! SEARCH and UID SEARCH (RFC 9051 6.4.4), ESEARCH (RFC 4731), SEARCHRES
//! (RFC 5182).

use super::*;

impl Session {
    pub(super) async fn search(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'_>],
        uid: bool,
    ) -> Done {
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
                key: Some(key),
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
        let ret = self.search_return.take();
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
                    let line = imap_wire::ext::esearch_response(tag, uid, &opts, &numbers);
                    self.push(&line);
                }
            }
            // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 6.4.4).
            None if self.rev2 => {
                let line = imap_wire::ext::esearch_response(
                    tag,
                    uid,
                    &imap_wire::ext::SearchReturn::default(),
                    &numbers,
                );
                self.push(&line);
            }
            None => {
                let mut out = String::from("* SEARCH");
                for n in numbers {
                    out.push(' ');
                    out.push_str(&n.to_string());
                }
                self.push(&out);
            }
        }
        Done::ok(if uid {
            "UID SEARCH completed"
        } else {
            "SEARCH completed"
        })
    }
}
