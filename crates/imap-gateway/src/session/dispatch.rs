//! Dispatch: a decoded command to its handler, by state (RFC 9051 3), and
//! the untagged updates and tagged reply that end every command.

use super::*;

impl Session {
    /// RFC 7162 3.1: CONDSTORE enabled by a command other than
    /// SELECT/EXAMINE (`before`: it was on before the command, or the
    /// command was one of those) while a mailbox is selected is answered
    /// with the mailbox's HIGHESTMODSEQ. Every command path ends with it,
    /// the commands of our own parsers (ESEARCH) as imap-codec's.
    pub(super) fn tell_condstore_enabled(&mut self, before: bool) {
        if !before
            && self.condstore
            && let Some(v) = &self.view
        {
            let line = format!("* OK [HIGHESTMODSEQ {}] Highest", v.highest_modseq());
            self.push(&line);
        }
    }

    /// Runs one command in its own span; `false` ends the session.
    pub(super) async fn command(&mut self, cmd: Command<'static>) -> Result<bool, End> {
        let name = cmd.body.name();
        let span = tracing::info_span!("imap.command", command = name);
        let started = std::time::Instant::now();
        let r = tracing::Instrument::instrument(self.command_inner(cmd), span).await;
        service_kit::metrics::command("imap", name, self.last_outcome, started);
        r
    }

    pub(super) async fn command_inner(&mut self, cmd: Command<'static>) -> Result<bool, End> {
        let tag = cmd.tag.inner().to_string();
        let authed = self.client.is_some();
        let selected = self.view.is_some();
        // Whether EXPUNGE responses may be sent after this command
        // (RFC 9051 7.5.1: not during FETCH, STORE, SEARCH).
        let mut expunges_ok = true;
        // Whether the tagged OK names the HIGHESTMODSEQ the client is now
        // in sync with (EXPUNGE once QRESYNC is enabled, RFC 7162 3.2.10).
        let mut tell_modseq = false;
        // Whether to ask the store for changes before answering: when the
        // command added messages to the selected mailbox, which must be
        // announced before its OK (RFC 9051 6.3.12), and for NOOP and
        // CHECK, the client's poll for news (RFC 9051 6.1.2): what another
        // session finished before the poll was sent (a COPY into this
        // mailbox, on this gateway or another) is told by it, even when
        // the Watch stream has not delivered it yet. Sessions of the view
        // polling at once share one store call. Everything else is told
        // from the Watch stream: no store call.
        let sync = selected
            && match &cmd.body {
                CommandBody::Noop | CommandBody::Check => true,
                CommandBody::Append { mailbox, .. }
                | CommandBody::Copy { mailbox, .. }
                | CommandBody::Move { mailbox, .. } => {
                    let target = self.mailbox_name(mailbox).ok();
                    self.view
                        .as_ref()
                        .is_some_and(|v| target.as_deref() == Some(v.name.as_str()))
                }
                _ => false,
            };
        // RFC 7162 3.1: CONDSTORE enabled by a command other than
        // SELECT/EXAMINE (whose responses always carry HIGHESTMODSEQ)
        // while a mailbox is selected is answered with the mailbox's
        // HIGHESTMODSEQ.
        let condstore_before = self.condstore
            || matches!(
                cmd.body,
                CommandBody::Select { .. } | CommandBody::Examine { .. }
            );
        // A UID command naming a UID at or above the UIDNEXT this session
        // was told: a message the client learned of elsewhere (the
        // APPENDUID of an APPEND whose announcement failed, the COPYUID of
        // another session) that the Watch stream may not have brought yet.
        // The view is brought up to date first (the new messages announced
        // before the command's own responses), so the command acts on the
        // message instead of passing over a UID it does not know. Sets with
        // "*" (a client asking what is new) are left to the Watch stream.
        if selected {
            let named = match &cmd.body {
                CommandBody::Fetch {
                    sequence_set,
                    uid: true,
                    ..
                }
                | CommandBody::Store {
                    sequence_set,
                    uid: true,
                    ..
                }
                | CommandBody::Copy {
                    sequence_set,
                    uid: true,
                    ..
                }
                | CommandBody::Move {
                    sequence_set,
                    uid: true,
                    ..
                }
                | CommandBody::ExpungeUid { sequence_set } => {
                    imap_wire::seq::largest_explicit(sequence_set)
                }
                _ => None,
            };
            if let (Some(n), Some(v)) = (named, &self.view)
                && n >= v.uid_next()
            {
                Box::pin(self.sync_view()).await;
                self.tell_updates(true).await;
            }
        }
        let done = match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.push(&format!("* CAPABILITY {caps}"));
                Done::ok("CAPABILITY completed")
            }
            CommandBody::Noop => Done::ok("NOOP completed"),
            CommandBody::Logout => {
                self.push("* BYE Logging out");
                self.push(&format!("{tag} OK LOGOUT completed"));
                self.flush().await?;
                return Ok(false);
            }
            CommandBody::Id { .. } => {
                self.push("* ID (\"name\" \"imap-gateway\" \"vendor\" \"mail\")");
                Done::ok("ID completed")
            }
            CommandBody::StartTLS if !authed => {
                return Box::pin(self.starttls(&tag)).await.map(|_| true);
            }
            CommandBody::Login { username, password } if !authed => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                if !self.plaintext_ok() {
                    Done::no("[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS")
                } else {
                    Box::pin(self.login(&user, &pw)).await
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authed => {
                let ir = initial_response.map(|r| r.declassify().to_vec());
                Box::pin(self.authenticate(&mechanism, ir)).await?
            }
            CommandBody::StartTLS
            | CommandBody::Login { .. }
            | CommandBody::Authenticate { .. } => Done::bad("Already authenticated"),
            _ if !authed => Done::bad("Log in first"),
            CommandBody::Compress { .. } => {
                return Box::pin(self.compress(&tag)).await.map(|_| true);
            }
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    let s = c.to_string();
                    let up = s.to_ascii_uppercase();
                    if up == "UTF8=ACCEPT" || up == "IMAP4REV2" {
                        self.utf8 = true;
                        self.rev2 |= up == "IMAP4REV2";
                        enabled.push(s);
                    } else if up == "CONDSTORE" {
                        self.condstore = true;
                        enabled.push(s);
                    } else if up == "QRESYNC" {
                        // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push(s);
                    }
                }
                if !enabled.is_empty() {
                    self.push(&format!("* ENABLED {}", enabled.join(" ")));
                }
                Done::ok("ENABLE completed")
            }
            CommandBody::Namespace => {
                self.push("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                Done::ok("NAMESPACE completed")
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => Box::pin(self.select(&mailbox, false, &parameters)).await,
            CommandBody::Examine {
                mailbox,
                parameters,
            } => Box::pin(self.select(&mailbox, true, &parameters)).await,
            CommandBody::Create { mailbox } => Box::pin(self.create(&mailbox)).await,
            CommandBody::Delete { mailbox } => Box::pin(self.delete(&mailbox)).await,
            CommandBody::Rename { from, to } => Box::pin(self.rename(&from, &to)).await,
            CommandBody::Subscribe { mailbox } => Box::pin(self.subscribe(&mailbox, true)).await,
            CommandBody::Unsubscribe { mailbox } => Box::pin(self.subscribe(&mailbox, false)).await,
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(&reference, &mailbox_wildcard, false)).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => Box::pin(self.list(&reference, &mailbox_wildcard, true)).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                // RFC 7162 3.1: STATUS (HIGHESTMODSEQ) enables CONDSTORE.
                if item_names.contains(&StatusDataItemName::HighestModSeq) {
                    self.condstore = true;
                }
                Box::pin(self.status(&mailbox, item_names.as_ref())).await
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => Box::pin(self.append(&mailbox, &flags, date, message)).await,
            CommandBody::GetQuota { root } => Box::pin(self.get_quota(&root)).await,
            CommandBody::GetQuotaRoot { mailbox } => Box::pin(self.get_quota_root(&mailbox)).await,
            CommandBody::GetMetadata {
                options,
                mailbox,
                entries,
            } => Box::pin(self.get_metadata(&options, &mailbox, entries.as_ref())).await,
            CommandBody::SetMetadata {
                mailbox,
                entry_values,
            } => Box::pin(self.set_metadata(&mailbox, entry_values.as_ref())).await,
            CommandBody::SetQuota { .. } => {
                // RFC 9208 4.1: no QUOTASET capability; limits are the
                // operator's (mailctl quota).
                Done::no("[NOPERM] Quotas are set by the administrator")
            }
            CommandBody::Idle => return self.idle(&tag).await,
            _ if !selected => Done::bad("No mailbox selected"),
            CommandBody::Check => Done::ok("CHECK completed"),
            CommandBody::Close => {
                Box::pin(self.expunge_deleted(None, false)).await?;
                self.view = None;
                self.contexts.clear();
                Done::ok("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.view = None;
                self.contexts.clear();
                Done::ok("UNSELECT completed")
            }
            CommandBody::Expunge => {
                tell_modseq = self.qresync;
                Box::pin(self.expunge_deleted(None, true)).await?
            }
            CommandBody::ExpungeUid { sequence_set } => {
                tell_modseq = self.qresync;
                Box::pin(self.expunge_deleted(Some(&sequence_set), true)).await?
            }
            CommandBody::Search {
                criteria,
                uid,
                charset,
            } => {
                expunges_ok = uid;
                let _ = charset;
                // RFC 7162 3.1: SEARCH MODSEQ enables CONDSTORE.
                if crate::search::has_modseq(criteria.as_ref()) {
                    self.condstore = true;
                }
                Box::pin(self.search(&tag, criteria.as_ref(), uid)).await
            }
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                expunges_ok = uid;
                if crate::search::has_modseq(search_criteria.as_ref()) {
                    self.condstore = true;
                }
                Box::pin(self.sort(
                    &tag,
                    sort_criteria.as_ref(),
                    &charset,
                    search_criteria.as_ref(),
                    uid,
                ))
                .await
            }
            CommandBody::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => {
                expunges_ok = uid;
                Box::pin(self.thread(&algorithm, &charset, search_criteria.as_ref(), uid)).await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                expunges_ok = uid;
                Box::pin(self.fetch(&sequence_set, &macro_or_item_names, uid, &modifiers)).await?
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                expunges_ok = uid;
                let unchanged = modifiers.iter().find_map(|m| match m {
                    imap_codec::imap_types::command::StoreModifier::UnchangedSince(n) => Some(*n),
                    #[allow(unreachable_patterns)]
                    _ => None,
                });
                // RFC 7162 3.1: UNCHANGEDSINCE enables CONDSTORE.
                if unchanged.is_some() {
                    self.condstore = true;
                }
                Box::pin(self.store(&sequence_set, kind, response, &flags, uid, unchanged)).await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(&sequence_set, &mailbox, uid, false)).await?,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => Box::pin(self.copy(&sequence_set, &mailbox, uid, true)).await?,
            // Every variant is handled today; imap-codec may add more.
            #[allow(unreachable_patterns)]
            _ => Done::bad("Command not supported"),
        };
        if done.kind == "BAD" {
            self.bad += 1;
        }
        if sync {
            Box::pin(self.sync_view()).await;
        }
        // Only the command that appended may skip its store call.
        self.appended_upto = (0, 0);
        self.tell_updates(expunges_ok).await;
        self.tell_condstore_enabled(condstore_before);
        self.last_outcome = done.kind;
        let mut done = done;
        if tell_modseq
            && done.kind == "OK"
            && let Some(v) = &self.view
        {
            done.text = format!("[HIGHESTMODSEQ {}] {}", v.highest_modseq(), done.text);
        }
        let line = format!("{tag} {} {}", done.kind, done.text);
        self.push(&line);
        if self.bad >= MAX_BAD {
            self.push("* BYE Too many invalid commands");
            return Ok(false);
        }
        Ok(true)
    }
}
