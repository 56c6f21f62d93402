//! The command path a server runs on untrusted bytes, as one function for
//! fuzzing: framing with the `Fragmentizer` (arbitrary chunking), the
//! extension pre-parsers, decoding with `CommandCodec`, and the pure
//! helpers the gateway applies to decoded commands (sequence sets, mailbox
//! names, LIST patterns). It must never panic and never allocate beyond
//! the framing limit, whatever the input.

use imap_codec::CommandCodec;
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

/// Largest command message the harness accepts (the gateway's cap is its
/// APPENDLIMIT plus the line limit).
const MAX_MESSAGE: u32 = 64 * 1024;

/// Runs `input` through the command path. The first byte picks the size
/// of the chunks the bytes arrive in.
pub fn command_path(input: &[u8]) {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let chunk = (first as usize % 64) + 1;
    let mut frag = Fragmentizer::new(MAX_MESSAGE);
    let uids: Vec<u32> = (1..=50).map(|i| i * 3).collect();
    let mut pending = rest.chunks(chunk);
    loop {
        match frag.progress() {
            Some(FragmentInfo::Line { .. }) | Some(FragmentInfo::Literal { .. }) => {
                if !frag.is_message_complete() {
                    continue;
                }
                let msg = frag.message_bytes();
                let _ = crate::ext::parse_list_extended(msg);
                if let Ok(Some(es)) = crate::ext::parse_esearch(msg) {
                    let opts = es.ret.unwrap_or_default();
                    let _ = crate::ext::esearch_mailbox_response("t", "m", false, 1, &opts, &uids);
                    use imap_codec::decode::Decoder;
                    let _ = CommandCodec::default().decode(&es.search);
                }
                if let Ok(Some((rewritten, opts))) = crate::ext::split_search_return(msg) {
                    let _ = crate::ext::esearch_response("t", opts.count, &opts, &uids);
                    use imap_codec::decode::Decoder;
                    let _ = CommandCodec::default().decode(&rewritten);
                }
                if let Ok(cmd) = frag.decode_message(&CommandCodec::default()) {
                    apply(&cmd.body, &uids);
                }
            }
            None => match pending.next() {
                Some(c) => frag.enqueue_bytes(c),
                None => return,
            },
        }
    }
}

fn name(m: &Mailbox<'_>) {
    if let Mailbox::Other(o) = m
        && let Ok(s) = std::str::from_utf8(o.as_ref())
    {
        let _ = crate::utf7::decode(s).map(|d| crate::utf7::encode(&d));
    }
}

fn apply(body: &CommandBody<'_>, uids: &[u32]) {
    match body {
        CommandBody::Fetch { sequence_set, .. }
        | CommandBody::Store { sequence_set, .. }
        | CommandBody::Copy { sequence_set, .. }
        | CommandBody::Move { sequence_set, .. }
        | CommandBody::ExpungeUid { sequence_set } => {
            let _ = crate::seq::message_numbers(sequence_set, uids.len() as u32);
            let _ = crate::seq::uid_positions(sequence_set, uids);
        }
        CommandBody::Select { mailbox, .. }
        | CommandBody::Examine { mailbox, .. }
        | CommandBody::Create { mailbox }
        | CommandBody::Delete { mailbox }
        | CommandBody::Status { mailbox, .. }
        | CommandBody::Append { mailbox, .. } => name(mailbox),
        CommandBody::List {
            reference,
            mailbox_wildcard,
        }
        | CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => {
            name(reference);
            let p = match mailbox_wildcard {
                ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
                ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
            };
            for n in ["INBOX", "a/b/c", "Entwürfe", ""] {
                let _ = crate::pattern::matches(&p, n, '/');
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's seeds and simple mutations run as a test, so the
    /// path is exercised on every CI run (the fuzzer itself runs longer).
    #[test]
    fn seeds_and_mutations_do_not_panic() {
        let seeds: &[&[u8]] = &[
            b"\x05a LOGIN alice pw\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
            b"\x01a APPEND INBOX (\\Seen) {5}\r\nhello\r\n",
            b"\x07a APPEND INBOX {99999999}\r\nshort",
            b"\x03t UID SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 OR SEEN (FLAGGED SINCE 1-Jan-2020)\r\n",
            b"\x02t LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" {3+}\r\nfoo) RETURN (STATUS (MESSAGES))\r\n",
            b"\x09t STORE 1,3:5,* +FLAGS.SILENT (\\Deleted $Forwarded)\r\nu UID MOVE 2:* \"&AMk-t&AOk-\"\r\n",
            b"\x06t ESEARCH IN (personal subtree-one (a {2+}\r\nbc) mailboxes \"x\") RETURN (MIN COUNT) CHARSET UTF-8 BODY {3}\r\nabc\r\n",
            b"\x04((((((((((((((((((((((((((((((\r\n",
            b"\x00\xff\xfe\x00\r\n\n\n{0}\r\n",
            // Found by the fuzzer: a LIST pattern with a multi-byte
            // character at byte 5 panicked in INBOX folding.
            b"\x01a{{\nNDEc{{IPEN\nc LIST X {5}\r\nhell\xff\n",
        ];
        for seed in seeds {
            command_path(seed);
            for cut in 0..seed.len() {
                command_path(&seed[..cut]);
            }
            let mut x: u32 = 0x9e37_79b9;
            for _ in 0..300 {
                let mut m = seed.to_vec();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    if m.is_empty() {
                        break;
                    }
                    let i = x as usize % m.len();
                    m[i] = (x >> 8) as u8;
                }
                command_path(&m);
            }
        }
    }
}

#[cfg(test)]
mod depth {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;

    /// Deeply nested input must be refused by the parser, not overflow the
    /// stack (which would abort the whole gateway).
    #[test]
    fn deep_nesting_is_refused() {
        for depth in [100usize, 10_000, 100_000] {
            let mut cmd = b"a SEARCH ".to_vec();
            cmd.extend(std::iter::repeat_n(b'(', depth));
            cmd.extend_from_slice(b"ALL");
            cmd.extend(std::iter::repeat_n(b')', depth));
            cmd.extend_from_slice(b"\r\n");
            let r = CommandCodec::default().decode(&cmd);
            assert!(depth < 1000 || r.is_err(), "depth {depth} accepted");
            let mut cmd = b"a SEARCH ".to_vec();
            for _ in 0..depth {
                cmd.extend_from_slice(b"NOT ");
            }
            cmd.extend_from_slice(b"ALL\r\n");
            let _ = CommandCodec::default().decode(&cmd);
        }
    }
}
