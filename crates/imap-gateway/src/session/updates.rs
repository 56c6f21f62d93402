//! Untagged updates of the selected mailbox (EXISTS, EXPUNGE, FETCH FLAGS,
//! RECENT; RFC 9051 7) and IDLE (RFC 2177).

use super::*;

impl Session {
    /// Asks the store for everything that changed in the selected mailbox
    /// since the view's MODSEQ, without waiting for the Watch stream: used
    /// after this session added messages to it (APPEND, COPY, MOVE) and for
    /// STATUS of it, so the client learns of them before the tagged reply.
    /// A read-write session claims \Recent on the new messages.
    ///
    /// After this session's APPEND to the selected mailbox, the view
    /// needs to be complete only up to the MODSEQ the APPEND left: its
    /// Watch stream often brings that first (the view's own \Recent claim
    /// included), and then no store call is made.
    pub(super) async fn sync_view(&mut self) {
        let (shared, validity) = match &self.view {
            Some(v) => (v.shared().clone(), v.uid_validity()),
            None => return,
        };
        let need = match std::mem::take(&mut self.appended_upto) {
            (v, m) if v == validity && v != 0 && m > 0 => Some(m),
            _ => None,
        };
        let Some(c) = self.client() else { return };
        // A failure leaves the change to the Watch stream.
        if let Err(e) = shared.refresh_upto(c, need).await {
            tracing::debug!(error = %e, "refreshing the selected mailbox failed");
        }
    }

    /// Moves the view to the latest shared snapshot and writes the
    /// untagged responses that may be sent now.
    pub(super) fn drain_updates(&mut self, expunges_ok: bool) {
        let (how, qresync) = (self.flag_fetch(), self.qresync);
        let Some(view) = self.view.as_mut() else {
            return;
        };
        view.sync(&std::collections::HashMap::new());
        let (validity, added) = std::mem::take(&mut self.added_here);
        if validity == view.uid_validity() {
            view.added_here(&added);
        }
        let owed_recent = std::mem::take(&mut view.owe_recent);
        let mut owed_flags = std::mem::take(&mut view.owe_flags);
        let mut lines = Vec::new();
        // New keywords are announced before any FETCH can show them.
        let pending: Vec<u32> = view.pending_flags.iter().copied().collect();
        for uid in pending {
            if let Some(f) = view.position(uid).and_then(|i| view.msg_at(i)) {
                let f = f.flags.clone();
                owed_flags |= view.learn_keywords(&f);
            }
        }
        if owed_flags {
            lines.extend(view.flags_responses());
        }
        if expunges_ok {
            // Messages this command added and someone else expunged at
            // once: EXISTS counts them before their EXPUNGE (RFC 9051
            // 6.3.12: the client hears of what it added).
            if std::mem::take(&mut view.tell_first)
                && let Some(n) = view.tell_exists()
            {
                lines.push(format!("* {n} EXISTS"));
            }
            lines.extend(condstore::expunge_lines(&view.take_expunges(), qresync));
        }
        // Counted after the expunges above: EXISTS is the number of
        // messages once they are gone.
        if let Some(n) = view.tell_exists() {
            lines.push(format!("* {n} EXISTS"));
        }
        if owed_recent && !self.rev2 {
            lines.push(format!("* {} RECENT", view.recent.len()));
        }
        let changed: Vec<u32> = std::mem::take(&mut view.pending_flags)
            .into_iter()
            .collect();
        let mut fetches = Vec::new();
        for uid in changed {
            if let Some((i, m)) = view
                .position(uid)
                .and_then(|i| view.msg_at(i).map(|m| (i, m)))
            {
                let items = condstore::flag_items(how, m, view.recent.contains(&uid));
                fetches.push(fetch::encode(i as u32 + 1, items));
            }
        }
        if view.gone {
            lines.push("* BYE Mailbox was deleted or renamed".to_string());
        }
        for l in lines {
            self.push(&l);
        }
        for f in fetches {
            self.out.extend_from_slice(&f);
        }
    }

    /// Sends FLAGS and PERMANENTFLAGS again when `flags` carry a keyword
    /// the client has not been told of; called before any FETCH response
    /// that shows flags (RFC 9051 7.3.5: a client learns the mailbox's
    /// keywords from FLAGS).
    pub(super) fn announce_keywords(&mut self, flags: &pb::Flags) {
        let Some(view) = self.view.as_mut() else {
            return;
        };
        let learnt = view.learn_keywords(flags);
        if learnt || std::mem::take(&mut view.owe_flags) {
            view.owe_flags = false;
            for l in view.flags_responses() {
                self.push(&l);
            }
        }
    }

    /// Between commands with NOTIFY: the selected mailbox's events (its
    /// expunges only for SELECTED, not SELECTED-DELAYED, RFC 5465 6.1)
    /// and other mailboxes', written out at once.
    pub(super) async fn notify_between(&mut self) {
        let selected = self.notify.as_ref().and_then(|n| n.selected.as_ref());
        let expunges_ok = selected.is_some_and(|s| s.messages && !s.delayed);
        if selected.is_some_and(|s| s.messages || s.flags) {
            self.tell_updates(expunges_ok).await;
        } else {
            Box::pin(self.notify_pending()).await;
        }
        let _ = self.flush().await;
    }

    pub(super) async fn idle(&mut self, tag: &str) -> Result<bool, End> {
        self.tell_updates(true).await;
        self.push("+ idling");
        self.flush().await?;
        let timeout = self.settings().idle_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            // Anything already framed is the DONE line.
            if let Some(FragmentInfo::Line { .. }) = self.frag.progress()
                && self.frag.is_message_complete()
            {
                let line = String::from_utf8_lossy(self.frag.message_bytes())
                    .trim()
                    .to_ascii_uppercase();
                if line == "DONE" {
                    self.tell_updates(true).await;
                    self.push(&format!("{tag} OK IDLE terminated"));
                    return Ok(true);
                }
                self.push(&format!("{tag} BAD Expected DONE"));
                return Ok(true);
            }
            let mut rx = self.view.as_ref().map(|v| v.changes());
            let wake = self.notify.as_ref().map(|n| n.wake.clone());
            let event = tokio::select! {
                b = self.read_input(READ_CHUNK, timeout) => Event::Bytes(b),
                _ = changed(&mut rx) => Event::Change,
                _ = async {
                    match wake {
                        Some(w) => w.notified().await,
                        None => std::future::pending().await,
                    }
                } => Event::Change,
                _ = tokio::time::sleep_until(deadline) => Event::Timeout,
                _ = shutdown.cancelled() => Event::Shutdown,
            };
            match event {
                Event::Bytes(Ok(b)) if b.is_empty() => return Err(End::Closed),
                Event::Bytes(Ok(b)) => self.frag.enqueue_bytes(&b),
                Event::Bytes(Err(ReadError::Timeout)) | Event::Timeout => {
                    self.push("* BYE Autologout; idle for too long");
                    self.flush().await?;
                    return Ok(false);
                }
                Event::Bytes(Err(ReadError::Io(e))) => return Err(e.into()),
                Event::Change => {
                    self.tell_updates(true).await;
                    self.flush().await?;
                }
                Event::Shutdown => {
                    self.push("* BYE Server shutting down");
                    self.flush().await?;
                    return Ok(false);
                }
            }
        }
    }
}

enum Event {
    Bytes(Result<Vec<u8>, ReadError>),
    Change,
    Timeout,
    Shutdown,
}

/// Resolves when the shared view moves on; never without a view.
pub(super) async fn changed(
    rx: &mut Option<tokio::sync::watch::Receiver<Arc<crate::shared::Snapshot>>>,
) {
    if let Some(r) = rx
        && r.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}
