//! SELECT / EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE / UNSUBSCRIBE.

use imap_codec::imap_types::command::SelectParameter;

use super::*;

impl Session {
    pub(super) async fn select(
        &mut self,
        m: &Mailbox<'_>,
        read_only: bool,
        params: &[SelectParameter],
    ) -> Done {
        // RFC 7162 3.2.5: QRESYNC parameters before ENABLE QRESYNC are a
        // protocol error (and nothing is closed); CONDSTORE enables it.
        let mut resync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.qresync {
                        return Done::bad("QRESYNC is not enabled (ENABLE QRESYNC first)");
                    }
                    resync = Some((
                        uid_validity.get(),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    ));
                }
            }
        }
        // A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2); the
        // end of the previous one's responses is marked (7.1, CLOSED). The
        // old view is kept until the new one is open: a re-SELECT of the
        // same mailbox then costs its changes, not the mailbox.
        let previous = self.view.take();
        // Contexts end with the mailbox (RFC 5267 4.2).
        self.contexts.clear();
        if previous.is_some() {
            self.push("* OK [CLOSED] Previous mailbox closed");
        }
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(c) = self.client() else {
            return Done::bad("Log in first");
        };
        let account: Arc<str> = Arc::from(self.user.as_str());
        let shared = match self.ctx.views.open(&account, &name, read_only, &c).await {
            Ok(s) => s,
            Err(s) => return store_no(&s),
        };
        drop(previous);
        let view = View::new(name, shared, c);
        for l in view.flags_responses() {
            self.push(&l);
        }
        self.push(&format!("* {} EXISTS", view.exists()));
        if self.rev2 {
            // RFC 9051 6.3.2: the mailbox's LIST response; no RECENT or UNSEEN.
            let mut line = b"* LIST () \"/\" ".to_vec();
            line.extend_from_slice(&self.wire_name(&view.name));
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.push(&format!("* {} RECENT", view.recent.len()));
            if let Some(u) = view.unseen_first() {
                self.push(&format!("* OK [UNSEEN {u}] First unseen"));
            }
        }
        self.push(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uid_validity()
        ));
        // RFC 8474 4.2: the mailbox's MAILBOXID (its UIDVALIDITY, which
        // the store never reuses and a RENAME keeps).
        self.push(&format!("* OK [MAILBOXID (F{})] Ok", view.uid_validity()));
        self.push(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            view.uid_next()
        ));
        self.push(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest",
            view.highest_modseq()
        ));
        self.view = Some(view);
        if let Some((validity, modseq, known)) = resync
            && let Err(d) = Box::pin(self.qresync_select(validity, modseq, known.as_ref())).await
        {
            // A failed SELECT leaves nothing selected (RFC 9051 6.3.2).
            self.view = None;
            return d;
        }
        if read_only {
            Done::ok("[READ-ONLY] EXAMINE completed")
        } else {
            Done::ok("[READ-WRITE] SELECT completed")
        }
    }

    pub(super) async fn create(&mut self, m: &Mailbox<'_>) -> Done {
        let name = match self.new_mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        self.create_named(name, pb::SpecialUse::None).await
    }

    /// CREATE with USE (RFC 6154 3, CREATE-SPECIAL-USE): the mailbox gets
    /// the one special use named; several, or one we do not keep, is NO
    /// [USEATTR].
    pub(super) async fn create_special_use(&mut self, raw: &[u8], uses: &[String]) -> Done {
        let name = match Mailbox::try_from(raw.to_vec()) {
            Ok(m) => match self.new_mailbox_name(&m) {
                Ok(n) => n,
                Err(d) => return d,
            },
            Err(_) => return Done::bad("Invalid mailbox name"),
        };
        let special = match uses {
            [] => pb::SpecialUse::None,
            [one] => match one.to_ascii_lowercase().as_str() {
                "\\drafts" => pb::SpecialUse::Drafts,
                "\\sent" => pb::SpecialUse::Sent,
                "\\trash" => pb::SpecialUse::Trash,
                "\\junk" => pb::SpecialUse::Junk,
                "\\archive" => pb::SpecialUse::Archive,
                // \All and \Flagged name virtual mailboxes (RFC 6154 2):
                // a plain mailbox must not claim to be one.
                _ => return Done::no(format!("[USEATTR] {one} is not a special use we keep")),
            },
            _ => return Done::no("[USEATTR] A mailbox has one special use here"),
        };
        self.create_named(name, special).await
    }

    async fn create_named(&mut self, name: String, special: pb::SpecialUse) -> Done {
        // A trailing separator only says the name will have children.
        let name = name.trim_end_matches(SEP).to_string();
        if name.eq_ignore_ascii_case("INBOX") {
            return Done::no("[ALREADYEXISTS] INBOX always exists");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .create_mailbox(pb::CreateMailboxRequest {
                name: name.clone(),
                special_use: special as i32,
            })
            .await
        {
            // RFC 8474 4.1: the new mailbox's MAILBOXID.
            Ok(r) => {
                self.notify_own_list(&[&name]);
                match r.into_inner().mailbox {
                    Some(m) => Done::ok(format!(
                        "[MAILBOXID (F{})] CREATE completed",
                        m.uid_validity
                    )),
                    None => Done::ok("CREATE completed"),
                }
            }
            Err(s) => store_no(&s),
        }
    }

    pub(super) async fn delete(&mut self, m: &Mailbox<'_>) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        if self.view.as_ref().is_some_and(|v| v.name == name) {
            self.view = None;
        }
        match c
            .delete_mailbox(pb::DeleteMailboxRequest { name: name.clone() })
            .await
        {
            Ok(_) => {
                self.notify_own_list(&[&name]);
                Done::ok("DELETE completed")
            }
            Err(s) => store_no(&s),
        }
    }

    pub(super) async fn rename(&mut self, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Done {
        let (from, to) = match (self.mailbox_name(from), self.new_mailbox_name(to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(d), _) | (_, Err(d)) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .rename_mailbox(pb::RenameMailboxRequest {
                from: from.clone(),
                to: to.clone(),
            })
            .await
        {
            Ok(_) => {
                self.notify_own_list(&[&from, &to]);
                Done::ok("RENAME completed")
            }
            Err(s) => store_no(&s),
        }
    }

    pub(super) async fn subscribe(&mut self, m: &Mailbox<'_>, on: bool) -> Done {
        let name = match self.mailbox_name(m) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        match c
            .set_subscribed(pb::SetSubscribedRequest {
                name: name.clone(),
                subscribed: on,
            })
            .await
        {
            Ok(_) => {
                self.notify_own_list(&[&name]);
                Done::ok(if on {
                    "SUBSCRIBE completed"
                } else {
                    "UNSUBSCRIBE completed"
                })
            }
            Err(s) => store_no(&s),
        }
    }
}
