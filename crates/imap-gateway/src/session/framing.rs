//! Framing: reading one command message (line and literals, within the
//! limits), the command loop, and the syntax imap-codec does not parse yet
//! (LIST-EXTENDED, SEARCH RETURN, the SEARCHRES `$`).

use super::*;

impl Session {
    /// Reads the next complete command message (line plus any literals).
    /// `None` when the client is gone or idle too long.
    pub(super) async fn read_message(&mut self) -> Result<Option<()>, End> {
        // Bytes received since the last complete fragment, and whether they
        // belong to an announced literal: a line (outside literals) may not
        // grow past max_line, so memory per connection stays bounded by it
        // rather than by the APPEND limit.
        let mut since_fragment: usize = 0;
        let mut in_literal = false;
        let mut idle_deadline = tokio::time::Instant::now() + self.settings().idle_timeout;
        loop {
            let progress = self.frag.progress();
            if progress.is_some() {
                since_fragment = 0;
                in_literal = matches!(
                    progress,
                    Some(FragmentInfo::Line {
                        announcement: Some(_),
                        ..
                    })
                );
            }
            match progress {
                Some(FragmentInfo::Line {
                    announcement: Some(LiteralAnnouncement { mode, length }),
                    ..
                }) => {
                    let max = self.settings().max_append;
                    // Each literal within APPENDLIMIT, and the command as a
                    // whole (a MULTIAPPEND) within what one command may carry.
                    let so_far = self.frag.message_bytes().len() as u64;
                    if length > max || so_far + u64::from(length) > u64::from(self.max_message()) {
                        let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
                        if mode == LiteralMode::Sync {
                            // The client waits for "+": refuse, and it will
                            // not send the literal.
                            self.frag.skip_message();
                            let t = tag.unwrap_or_else(|| "*".into());
                            self.push(&format!(
                                "{t} NO [TOOBIG] Literal larger than APPENDLIMIT={max}"
                            ));
                            self.flush().await?;
                        } else {
                            // LITERAL+: the bytes come anyway; the size cap
                            // discards them and the command fails.
                            self.frag.poison_message();
                        }
                        continue;
                    }
                    if mode == LiteralMode::NonSync
                        && self.settings().literal_minus
                        && length > LITERAL_MINUS_MAX
                    {
                        // RFC 7888 5: over 4,096 bytes needs a synchronizing
                        // literal; the bytes come anyway and are discarded,
                        // and the command is BAD [TOOBIG].
                        self.literal_minus_breach = true;
                        self.frag.poison_message();
                        continue;
                    }
                    if mode == LiteralMode::Sync {
                        self.push("+ Ready for literal data");
                        self.flush().await?;
                    }
                }
                Some(FragmentInfo::Line { start, end, .. }) => {
                    let line_len = end - start;
                    if line_len > self.settings().max_line as usize {
                        self.frag.poison_message();
                    }
                    if self.frag.is_message_complete() {
                        return Ok(Some(()));
                    }
                }
                Some(FragmentInfo::Literal { .. }) => {
                    if self.frag.is_message_complete() {
                        return Ok(Some(()));
                    }
                }
                None => {
                    self.flush().await?;
                    if self.frag.message_bytes().is_empty() {
                        // Between commands, with nothing buffered: start
                        // afresh, so the buffers a large command (an
                        // APPEND literal) grew are not kept for the rest of
                        // the session.
                        self.frag = Fragmentizer::new(self.max_message());
                    }
                    let timeout = self.settings().idle_timeout;
                    let shutdown = self.ctx.shutdown.clone();
                    // With NOTIFY, events are told between commands too
                    // (RFC 5465 3.1): the selected mailbox's as SELECTED /
                    // SELECTED-DELAYED say, other mailboxes' as they come.
                    // Only between commands: never while a command is
                    // partly received (its message numbers must hold).
                    let between = self.frag.message_bytes().is_empty();
                    let wake = self
                        .notify
                        .as_ref()
                        .filter(|_| between)
                        .map(|n| n.wake.clone());
                    let mut view_rx = match self.notify.as_ref().and_then(|n| n.selected.as_ref()) {
                        Some(s) if between && (s.messages || s.flags) => {
                            self.view.as_ref().map(|v| v.changes())
                        }
                        _ => None,
                    };
                    // Notifications do not count as the client's activity:
                    // the autologout deadline holds across them.
                    let remaining =
                        idle_deadline.saturating_duration_since(tokio::time::Instant::now());
                    if remaining.is_zero() {
                        self.push("* BYE Autologout; idle for too long");
                        return Ok(None);
                    }
                    let bytes = tokio::select! {
                        b = self.read_input(READ_CHUNK, remaining.min(timeout)) => b,
                        _ = notified(wake) => {
                            self.notify_between().await;
                            continue;
                        }
                        _ = super::updates::changed(&mut view_rx) => {
                            self.notify_between().await;
                            continue;
                        }
                        _ = shutdown.cancelled() => {
                            self.push("* BYE Server shutting down");
                            return Ok(None);
                        }
                    };
                    match bytes {
                        Ok(b) if b.is_empty() => return Ok(None),
                        Ok(b) => {
                            idle_deadline =
                                tokio::time::Instant::now() + self.settings().idle_timeout;
                            since_fragment += b.len();
                            if !in_literal
                                && since_fragment > self.settings().max_line as usize + READ_CHUNK
                            {
                                self.push("* BYE Command line too long");
                                return Ok(None);
                            }
                            self.frag.enqueue_bytes(&b)
                        }
                        Err(ReadError::Timeout) => {
                            self.push("* BYE Autologout; idle for too long");
                            return Ok(None);
                        }
                        Err(ReadError::Io(e)) => return Err(e.into()),
                    }
                }
            }
        }
    }

    pub(super) async fn run(&mut self) -> R {
        let greeting = format!(
            "* OK [CAPABILITY {}] IMAP server ready",
            self.capabilities()
        );
        self.push(&greeting);
        self.flush().await?;
        loop {
            // Whichever path counted the last BAD (imap-codec's or one of
            // the extension parsers below), too many end the session.
            if self.bad >= MAX_BAD {
                self.push("* BYE Too many invalid commands");
                return Ok(());
            }
            self.literal_minus_breach = false;
            if self.read_message().await?.is_none() {
                return Ok(());
            }
            let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
            // A message over a limit (a line, a literal) is refused by
            // imap-codec's decoder below, whatever command it holds: none
            // of the parsers of our own may run it.
            let over_limit =
                self.frag.is_message_poisoned() || self.frag.is_max_message_size_exceeded();
            // Syntax imap-codec does not parse yet: LIST-EXTENDED and
            // SEARCH RETURN (ESEARCH).
            if !over_limit
                && self.client.is_some()
                && first_line_has(self.frag.message_bytes(), b"LIST")
            {
                match imap_wire::ext::parse_list_extended(self.frag.message_bytes()) {
                    Ok(Some(ext)) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        let done = Box::pin(self.list_extended(ext)).await;
                        self.tell_updates(true).await;
                        self.last_outcome = done.kind;
                        self.push(&format!("{t} {} {}", done.kind, done.text));
                        continue;
                    }
                    Err(e) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        self.bad += 1;
                        self.push(&format!("{t} BAD {e}"));
                        continue;
                    }
                    Ok(None) => {}
                }
            }
            // Commands imap-codec does not parse.
            let condstore_before = self.condstore;
            let ext = if over_limit {
                None
            } else {
                Box::pin(self.extension_command()).await?
            };
            if let Some(done) = ext {
                let t = tag.clone().unwrap_or_else(|| "*".into());
                if done.kind == "BAD" {
                    self.bad += 1;
                }
                self.tell_updates(true).await;
                self.tell_condstore_enabled(condstore_before);
                self.last_outcome = done.kind;
                self.push(&format!("{t} {} {}", done.kind, done.text));
                continue;
            }
            self.search_return = None;
            let dollar = if !over_limit
                && self.view.is_some()
                && first_line_has(self.frag.message_bytes(), b"$")
            {
                Some(self.substitute_saved(self.frag.message_bytes()))
            } else {
                None
            };
            let source: &[u8] = match &dollar {
                Some(b) => b,
                None => self.frag.message_bytes(),
            };
            // SAVEDATE / OBJECTID search keys imap-codec does not parse.
            let extras = if !over_limit
                && self.view.is_some()
                && (first_line_has(source, b"SEARCH")
                    || first_line_has(source, b"SORT")
                    || first_line_has(source, b"THREAD"))
            {
                imap_wire::ext::rewrite_search_extras(source)
            } else {
                None
            };
            let dollar = extras.or(dollar);
            let source: &[u8] = match &dollar {
                Some(b) => b,
                None => self.frag.message_bytes(),
            };
            let rewritten = if !over_limit
                && (first_line_has(source, b"SEARCH") || first_line_has(source, b"SORT"))
            {
                match imap_wire::ext::split_search_return(source) {
                    Ok(Some((bytes, opts))) => {
                        self.search_return = Some(opts);
                        Some(bytes)
                    }
                    Ok(None) => dollar.clone(),
                    Err(e) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        self.bad += 1;
                        self.push(&format!("{t} BAD {e}"));
                        continue;
                    }
                }
            } else {
                dollar.clone()
            };
            // FETCH items imap-codec does not know (OBJECTID, SAVEDATE,
            // PREVIEW): taken out here, added to each FETCH response.
            self.fetch_extras = Default::default();
            self.status_mailboxid = None;
            let mailboxid = if over_limit || self.client.is_none() {
                None
            } else {
                imap_wire::ext::split_status_mailboxid(rewritten.as_deref().unwrap_or(source))
            };
            let rewritten = match mailboxid {
                Some((bytes, alone)) => {
                    self.status_mailboxid = Some(alone);
                    Some(bytes)
                }
                None => rewritten,
            };
            let rewritten = if !over_limit
                && self.view.is_some()
                && first_line_has(rewritten.as_deref().unwrap_or(source), b"FETCH")
            {
                match imap_wire::ext::split_fetch_extras(rewritten.as_deref().unwrap_or(source)) {
                    Ok(Some((bytes, extras))) => {
                        self.fetch_extras = extras;
                        Some(bytes)
                    }
                    Ok(None) => rewritten,
                    Err(e) => {
                        let t = tag.clone().unwrap_or_else(|| "*".into());
                        self.bad += 1;
                        self.push(&format!("{t} BAD {e}"));
                        continue;
                    }
                }
            } else {
                rewritten
            };
            let decoded = match rewritten {
                Some(bytes) => {
                    use imap_codec::decode::Decoder;
                    match CommandCodec::default().decode(&bytes) {
                        Ok((&[], cmd)) => Ok(cmd.to_static()),
                        _ => Err(("BAD", "Syntax error in SEARCH".to_string())),
                    }
                }
                None => match self.frag.decode_message(&CommandCodec::default()) {
                    Ok(cmd) => Ok(cmd.to_static()),
                    Err(e) => Err(match e {
                        DecodeMessageError::MessageTooLong { .. } => {
                            ("NO", "[TOOBIG] Command too long".to_string())
                        }
                        DecodeMessageError::MessagePoisoned { .. }
                            if std::mem::take(&mut self.literal_minus_breach) =>
                        {
                            (
                                "BAD",
                                "[TOOBIG] A non-synchronizing literal is at most 4096 bytes (LITERAL-)"
                                    .to_string(),
                            )
                        }
                        DecodeMessageError::MessagePoisoned { .. } => {
                            ("NO", "[TOOBIG] Command or literal too long".to_string())
                        }
                        _ => ("BAD", "Syntax error in command".to_string()),
                    }),
                },
            };
            match decoded {
                Ok(cmd) => {
                    if !self.command(cmd).await? {
                        return Ok(());
                    }
                }
                Err((kind, text)) => {
                    self.bad += 1;
                    let unknown = self.unknown_command_name();
                    let t = tag.unwrap_or_else(|| "*".into());
                    // A plain syntax error names the command; a specific
                    // reason (a response code) stays as it is.
                    let text = match unknown {
                        Some(name) if kind == "BAD" && !text.starts_with('[') => {
                            format!("Unknown or invalid command: {name}")
                        }
                        _ => text,
                    };
                    self.push(&format!("{t} {kind} {text}"));
                    if self.bad >= MAX_BAD {
                        self.push("* BYE Too many invalid commands");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The commands imap-codec does not parse, once authenticated:
    /// CANCELUPDATE (RFC 5267 4.2), APPEND with several messages or
    /// CATENATE (RFC 3502, RFC 4469), CREATE with USE (RFC 6154 3),
    /// UNAUTHENTICATE (RFC 8437), GENURLAUTH / RESETKEY / URLFETCH (RFC
    /// 4467, RFC 5524), ESEARCH (MULTISEARCH, RFC 7377). `None`: the
    /// message is none of these (a keyword may be another command's
    /// argument) and goes to imap-codec.
    async fn extension_command(&mut self) -> Result<Option<Done>, End> {
        use imap_wire::ext;
        if self.client.is_none() {
            return Ok(None);
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"CANCELUPDATE") {
            match ext::parse_cancelupdate(msg) {
                Ok(Some(_)) if self.view.is_none() => {
                    return Ok(Some(Done::bad("No mailbox selected")));
                }
                Ok(Some(tags)) => return Ok(Some(self.cancel_update(&tags))),
                Ok(None) => {}
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"APPEND") {
            match ext::parse_multiappend(msg) {
                Err(ext::ExtError::TooMany(what)) => {
                    return Ok(Some(Done::no(format!("[LIMIT] {what}"))));
                }
                Ok(Some((name, messages))) => {
                    let done = Box::pin(self.multiappend(&name, messages)).await;
                    // Added to the selected mailbox: told before the OK.
                    if self.view.is_some() && done.kind == "OK" {
                        Box::pin(self.sync_view()).await;
                    }
                    return Ok(Some(done));
                }
                Ok(None) => {}
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"CREATE") {
            match ext::parse_create_special_use(msg) {
                Ok(Some((name, uses))) => {
                    return Ok(Some(Box::pin(self.create_special_use(&name, &uses)).await));
                }
                Ok(None) => {}
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        if is_unauthenticate(self.frag.message_bytes()) {
            Box::pin(self.unauthenticate()).await;
            return Ok(Some(Done::ok("Not authenticated any more")));
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"NOTIFY") {
            match ext::parse_notify(msg) {
                Ok(Some(cmd)) => return Ok(Some(Box::pin(self.notify(cmd)).await)),
                Ok(None) => {}
                Err(ext::ExtError::TooMany(what)) => {
                    return Ok(Some(Done::no(format!("[NOTIFICATIONOVERFLOW] {what}"))));
                }
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"ESEARCH") {
            match ext::parse_esearch(msg) {
                Ok(Some(es)) => {
                    let tag = self.frag.decode_tag().map(|t| t.inner().to_string());
                    let tag = tag.unwrap_or_default();
                    return Ok(Some(Box::pin(self.esearch(&tag, es)).await));
                }
                Ok(None) => {}
                Err(ext::ExtError::TooMany(what)) => {
                    return Ok(Some(Done::no(format!("[LIMIT] {what}"))));
                }
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        let msg = self.frag.message_bytes();
        if first_line_has(msg, b"GENURLAUTH")
            || first_line_has(msg, b"RESETKEY")
            || first_line_has(msg, b"URLFETCH")
        {
            match ext::parse_urlauth(msg) {
                Ok(Some(ext::UrlAuthCommand::GenUrlAuth(pairs))) => {
                    return Ok(Some(Box::pin(self.gen_urlauth(&pairs)).await));
                }
                Ok(Some(ext::UrlAuthCommand::ResetKey(mailbox, mechs))) => {
                    return Ok(Some(
                        Box::pin(self.reset_key(mailbox.as_deref(), &mechs)).await,
                    ));
                }
                Ok(Some(ext::UrlAuthCommand::UrlFetch(args))) => {
                    return Ok(Some(Box::pin(self.url_fetch(&args)).await?));
                }
                Ok(None) => {}
                Err(ext::ExtError::TooMany(what)) => {
                    return Ok(Some(Done::no(format!("[LIMIT] {what}"))));
                }
                Err(e) => return Ok(Some(Done::bad(e.to_string()))),
            }
        }
        Ok(None)
    }

    /// Replaces the SEARCHRES `$` (RFC 5182) in the first line of a command
    /// with the saved result: UIDs in UID commands and SEARCH, message
    /// numbers otherwise. An empty result becomes a UID no message has.
    pub(super) fn substitute_saved(&self, msg: &[u8]) -> Vec<u8> {
        let end = msg
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |p| p + 1);
        let (line, rest) = msg.split_at(end);
        let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let uid_cmd = words.get(1).is_some_and(|w| w.eq_ignore_ascii_case(b"UID"));
        // SORT and THREAD take search criteria too (RFC 5182 2.1).
        let search = words.iter().take(3).any(|w| {
            w.eq_ignore_ascii_case(b"SEARCH")
                || w.eq_ignore_ascii_case(b"SORT")
                || w.eq_ignore_ascii_case(b"THREAD")
        });
        let view = self.view.as_ref();
        let uids = uid_list_or_none(&self.saved);
        let seqs = {
            let mut n: Vec<u32> = self
                .saved
                .iter()
                .filter_map(|u| view.and_then(|v| v.position(*u)).map(|i| i as u32 + 1))
                .collect();
            n.sort_unstable();
            uid_list_or_none(&n)
        };
        let mut out = Vec::with_capacity(msg.len() + 16);
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let (core, tail) = match w.strip_suffix(b"\r\n") {
                Some(c) => (c, &b"\r\n"[..]),
                None => match w.strip_suffix(b"\n") {
                    Some(c) => (c, &b"\n"[..]),
                    None => (*w, &b""[..]),
                },
            };
            let (core, close) = match core.iter().position(|&b| b == b')') {
                Some(p) if core[..p] == *b"$" => (&core[..p], &core[p..]),
                _ => (core, &b""[..]),
            };
            if core == b"$" {
                let prev_uid = i > 0 && words[i - 1].eq_ignore_ascii_case(b"UID");
                if search && !prev_uid && i > 2 {
                    out.extend_from_slice(b"UID ");
                    out.extend_from_slice(uids.as_bytes());
                } else if uid_cmd || prev_uid {
                    out.extend_from_slice(uids.as_bytes());
                } else {
                    out.extend_from_slice(seqs.as_bytes());
                }
            } else {
                out.extend_from_slice(core);
            }
            out.extend_from_slice(close);
            out.extend_from_slice(tail);
        }
        out.extend_from_slice(rest);
        out
    }

    /// The command word of the current (undecodable) message, for the BAD
    /// text; only printable atoms are echoed.
    pub(super) fn unknown_command_name(&self) -> Option<String> {
        let bytes = self.frag.message_bytes();
        let line = bytes.split(|&b| b == b'\n').next()?;
        let word = line.split(|&b| b == b' ').nth(1)?;
        let w: String = word
            .iter()
            .take(32)
            .filter(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-')
            .map(|&b| b as char)
            .collect();
        (!w.is_empty()).then_some(w)
    }
}

/// Whether the first line of a command message contains `word` as a
/// separate, case-insensitive token (a cheap filter before the extension
/// parsers).
fn first_line_has(msg: &[u8], word: &[u8]) -> bool {
    let line = msg.split(|&b| b == b'\n').next().unwrap_or(&[]);
    line.split(|&b| b == b' ').any(|t| {
        let t = t.strip_suffix(b"\r").unwrap_or(t);
        let end = t.iter().position(|&b| b == b')').unwrap_or(t.len());
        let t = &t[..end];
        let t = t.strip_prefix(b"(").unwrap_or(t);
        t.eq_ignore_ascii_case(word)
    })
}

/// Whether a command message is `tag SP UNAUTHENTICATE` and nothing more.
fn is_unauthenticate(msg: &[u8]) -> bool {
    let line = msg
        .strip_suffix(b"\r\n")
        .or(msg.strip_suffix(b"\n"))
        .unwrap_or(msg);
    let mut words = line.split(|&b| b == b' ');
    let (_tag, cmd, rest) = (words.next(), words.next(), words.next());
    rest.is_none() && cmd.is_some_and(|c| c.eq_ignore_ascii_case(b"UNAUTHENTICATE"))
}

/// Resolves when NOTIFY's watchers have news; never without NOTIFY.
async fn notified(wake: Option<Arc<tokio::sync::Notify>>) {
    match wake {
        Some(w) => w.notified().await,
        None => std::future::pending().await,
    }
}
