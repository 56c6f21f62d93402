//! LIST and LSUB (RFC 9051 6.3.9, RFC 3501 6.3.9), LIST-EXTENDED (RFC
//! 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154).

use super::*;

impl Session {
    pub(super) async fn list(
        &mut self,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Done {
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let (reference, pattern) = if self.utf8 {
            (reference, pattern)
        } else {
            match (
                imap_wire::utf7::decode(&reference),
                imap_wire::utf7::decode(&pattern),
            ) {
                (Ok(r), Ok(p)) => (r, p),
                // No mailbox name can match what does not decode.
                _ => {
                    return Done::ok(if lsub {
                        "LSUB completed"
                    } else {
                        "LIST completed"
                    });
                }
            }
        };
        let cmd = if lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !lsub {
            // RFC 9051 6.3.9: the hierarchy delimiter and root.
            self.push("* LIST (\\Noselect) \"/\" \"\"");
            return Done::ok("LIST completed");
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let boxes = match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
            Ok(r) => r.into_inner().mailboxes,
            Err(s) => return store_no(&s),
        };
        let full = imap_wire::pattern::join(&reference, &pattern, SEP);
        let mut lines = Vec::new();
        for b in &boxes {
            let exists = b.uid_validity != 0;
            if lsub && !b.subscribed {
                continue;
            }
            if !lsub && !exists {
                continue;
            }
            if !imap_wire::pattern::matches(&full, &b.name, SEP) {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\NonExistent");
            }
            if !lsub {
                attrs.push(if b.has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            attrs.extend(special_use_attr(
                pb::SpecialUse::try_from(b.special_use).unwrap_or(pb::SpecialUse::None),
            ));
            let mut line = format!("* {cmd} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            line.extend_from_slice(&self.wire_name(&b.name));
            lines.push(line);
        }
        if lsub {
            // RFC 3501 6.3.9: when a subscribed mailbox does not match (a
            // "%" stops at its parent) but a parent that is not subscribed
            // does, LSUB returns the parent, flagged \Noselect.
            let subscribed: std::collections::HashSet<&str> = boxes
                .iter()
                .filter(|b| b.subscribed)
                .map(|b| b.name.as_str())
                .collect();
            let mut parents = std::collections::BTreeSet::new();
            for &name in &subscribed {
                if imap_wire::pattern::matches(&full, name, SEP) {
                    continue;
                }
                let mut up = name;
                while let Some(i) = up.rfind(SEP) {
                    up = &up[..i];
                    if !subscribed.contains(up) && imap_wire::pattern::matches(&full, up, SEP) {
                        parents.insert(up);
                    }
                }
            }
            for p in parents {
                let mut line = b"* LSUB (\\Noselect) \"/\" ".to_vec();
                line.extend_from_slice(&self.wire_name(p));
                lines.push(line);
            }
        }
        for l in lines {
            self.out.extend_from_slice(&l);
            self.out.extend_from_slice(b"\r\n");
        }
        Done::ok(format!("{cmd} completed"))
    }

    /// LIST with RFC 5258 selection and return options, several patterns,
    /// LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154).
    pub(super) async fn list_extended(&mut self, ext: imap_wire::ext::ListExtended) -> Done {
        // No mailbox name can match a reference or pattern that does not
        // decode: such a LIST answers nothing, successfully.
        let decode = |b: &[u8]| -> Result<String, Done> {
            let none = || Done::ok("LIST completed");
            let s = std::str::from_utf8(b).map_err(|_| none())?;
            if self.utf8 {
                Ok(s.to_string())
            } else {
                imap_wire::utf7::decode(s).map_err(|_| none())
            }
        };
        let reference = match decode(&ext.reference) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let mut patterns = Vec::new();
        for p in &ext.patterns {
            match decode(p) {
                Ok(p) => patterns.push(imap_wire::pattern::join(&reference, &p, SEP)),
                Err(d) => return d,
            }
        }
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let boxes = match c.list_mailboxes(pb::ListMailboxesRequest {}).await {
            Ok(r) => r.into_inner().mailboxes,
            Err(s) => return store_no(&s),
        };
        // Candidate names: every mailbox and every subscribed name, plus
        // the parents of subscribed names (for RECURSIVEMATCH).
        let mut names: std::collections::BTreeMap<String, Option<&pb::MailboxInfo>> =
            std::collections::BTreeMap::new();
        for b in &boxes {
            names.insert(b.name.clone(), Some(b));
            if ext.recursive_match && b.subscribed {
                let mut acc = String::new();
                for level in b.name.split(SEP) {
                    if !acc.is_empty() {
                        names.entry(acc.clone()).or_insert(None);
                        acc.push(SEP);
                    }
                    acc.push_str(level);
                }
            }
        }
        let mut out: Vec<u8> = Vec::new();
        let mut statuses = Vec::new();
        for (name, info) in &names {
            if !patterns
                .iter()
                .any(|p| imap_wire::pattern::matches(p, name, SEP))
            {
                continue;
            }
            let exists = info.is_some_and(|b| b.uid_validity != 0);
            let subscribed = info.is_some_and(|b| b.subscribed);
            let prefix = format!("{name}{SEP}");
            // RFC 5258 3.5: with RECURSIVEMATCH, a listed mailbox with a
            // subscribed descendant the patterns do not list carries
            // CHILDINFO, whether it is subscribed itself or not.
            let childinfo = ext.recursive_match
                && boxes.iter().any(|b| {
                    b.subscribed
                        && b.name.starts_with(&prefix)
                        && !patterns
                            .iter()
                            .any(|p| imap_wire::pattern::matches(p, &b.name, SEP))
                });
            if ext.subscribed && !subscribed && !childinfo {
                continue;
            }
            if !ext.subscribed && !exists {
                continue;
            }
            let special = info
                .map(|b| pb::SpecialUse::try_from(b.special_use).unwrap_or(pb::SpecialUse::None))
                .unwrap_or(pb::SpecialUse::None);
            if ext.special_use_only && special == pb::SpecialUse::None {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\NonExistent");
            }
            if subscribed && (ext.subscribed || ext.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            // Child attributes are only sent when asked for (RETURN
            // (CHILDREN)) once selection options are given, as RFC 5258's
            // examples and Dovecot do; a plain LIST keeps them (CHILDREN).
            let selecting = ext.subscribed || ext.special_use_only || ext.recursive_match;
            if exists && (ext.return_children || !selecting) {
                let has_children = boxes
                    .iter()
                    .any(|b| b.uid_validity != 0 && b.name.starts_with(&prefix));
                attrs.push(if has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            attrs.extend(special_use_attr(special));
            out.extend_from_slice(format!("* LIST ({}) \"/\" ", attrs.join(" ")).as_bytes());
            out.extend_from_slice(&self.wire_name(name));
            if childinfo {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            if let Some(items) = &ext.return_status
                && exists
            {
                statuses.push((name.clone(), items.clone(), out.len()));
            }
        }
        // LIST-STATUS: each STATUS follows its LIST line.
        let mut result = Vec::with_capacity(out.len());
        let mut from = 0;
        for (name, items, at) in statuses {
            result.extend_from_slice(&out[from..at]);
            from = at;
            let st = match c
                .mailbox_status(pb::MailboxStatusRequest { name: name.clone() })
                .await
            {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(_) => continue,
            };
            let parts: Vec<String> = items
                .iter()
                .map(|i| {
                    use imap_wire::ext::StatusItem as S;
                    if *i == S::MailboxId {
                        return format!("MAILBOXID (F{})", st.uid_validity);
                    }
                    let v = match i {
                        S::Messages => st.messages as u64,
                        S::UidNext => st.uid_next as u64,
                        S::UidValidity => st.uid_validity as u64,
                        S::Unseen => st.unseen as u64,
                        S::Deleted => st.deleted as u64,
                        S::Size => st.size,
                        S::Recent => st.recent as u64,
                        S::HighestModSeq => st.highest_modseq,
                        S::MailboxId => 0,
                    };
                    format!("{} {v}", i.as_str())
                })
                .collect();
            result.extend_from_slice(b"* STATUS ");
            result.extend_from_slice(&self.wire_name(&name));
            result.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        }
        result.extend_from_slice(&out[from..]);
        self.out.extend_from_slice(&result);
        Done::ok("LIST completed")
    }
}

/// The LIST attribute of a special use (RFC 6154 2).
fn special_use_attr(s: pb::SpecialUse) -> Option<&'static str> {
    Some(match s {
        pb::SpecialUse::Drafts => "\\Drafts",
        pb::SpecialUse::Sent => "\\Sent",
        pb::SpecialUse::Trash => "\\Trash",
        pb::SpecialUse::Junk => "\\Junk",
        pb::SpecialUse::Archive => "\\Archive",
        pb::SpecialUse::All => "\\All",
        pb::SpecialUse::Flagged => "\\Flagged",
        pb::SpecialUse::None => return None,
    })
}
