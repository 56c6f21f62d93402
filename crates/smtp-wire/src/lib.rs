//! SMTP on the wire, without I/O: command parsing (through `smtp-proto`)
//! and the DATA reader (RFC 5321 4.1.1.4, 4.5.2) with the SMTP smuggling
//! defence. Pure and synchronous, so it is fuzzed and tested with tables.

pub use smtp_proto;

use std::borrow::Cow;

use smtp_proto::Request;

/// Parses one complete command line (CRLF included) into an owned request.
pub fn parse_command(line: &[u8]) -> Result<Request<String>, smtp_proto::Error> {
    Request::parse(&mut line.iter()).map(owned)
}

/// What the message data turned out to be once its end arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Data {
    Complete(Vec<u8>),
    /// Larger than the limit: the rest was read and dropped.
    TooBig,
    /// A bare CR or LF (RFC 5321 2.3.8): refused, so nothing smuggled
    /// behind a fake ending is ever read as commands.
    BareNewline,
    /// A line longer than the limit.
    LineTooLong,
}

/// The DATA state: feed it the lines as the connection delivers them.
///
/// Only CRLF "." CRLF ends the data: a "." line must itself end in CRLF
/// and follow a line that ended in CRLF. Leading dots are unstuffed
/// (RFC 5321 4.5.2). Memory stays within `max_size`.
#[derive(Debug)]
pub struct DataReader {
    max_size: usize,
    body: Vec<u8>,
    too_big: bool,
    bare: bool,
    too_long: bool,
    prev_crlf: bool,
}

impl DataReader {
    pub fn new(max_size: usize, size_hint: usize) -> Self {
        Self {
            max_size,
            body: Vec::with_capacity(size_hint.min(max_size)),
            too_big: false,
            bare: false,
            too_long: false,
            prev_crlf: true,
        }
    }

    /// One complete line (LF-terminated). Returns the outcome when this
    /// line ended the data.
    pub fn line(&mut self, line: &[u8]) -> Option<Data> {
        let crlf = line.ends_with(b"\r\n");
        let content = match line {
            [rest @ .., b'\r', b'\n'] => rest,
            [rest @ .., b'\n'] => rest,
            other => other,
        };
        if crlf && self.prev_crlf && content == b"." {
            return Some(self.finish());
        }
        if !crlf || content.contains(&b'\r') {
            self.bare = true;
        }
        self.prev_crlf = crlf;
        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
        if self.body.len() + unstuffed.len() > self.max_size {
            self.too_big = true;
        } else if !self.too_big {
            self.body.extend_from_slice(unstuffed);
        }
        None
    }

    /// A line that exceeded the line limit and was discarded; `crlf`: it
    /// ended in CRLF.
    pub fn too_long_line(&mut self, crlf: bool) {
        self.too_long = true;
        self.bare |= !crlf;
        self.prev_crlf = crlf;
    }

    fn finish(&mut self) -> Data {
        if self.too_long && !self.too_big {
            Data::LineTooLong
        } else if self.bare {
            Data::BareNewline
        } else if self.too_big {
            Data::TooBig
        } else {
            Data::Complete(std::mem::take(&mut self.body))
        }
    }
}

fn owned(r: Request<Cow<'_, str>>) -> Request<String> {
    match r {
        Request::Ehlo { host } => Request::Ehlo {
            host: host.into_owned(),
        },
        Request::Lhlo { host } => Request::Lhlo {
            host: host.into_owned(),
        },
        Request::Helo { host } => Request::Helo {
            host: host.into_owned(),
        },
        Request::Mail { from } => Request::Mail {
            from: from.into_owned(),
        },
        Request::Rcpt { to } => Request::Rcpt {
            to: to.into_owned(),
        },
        Request::Bdat {
            chunk_size,
            is_last,
        } => Request::Bdat {
            chunk_size,
            is_last,
        },
        Request::Auth {
            mechanism,
            initial_response,
        } => Request::Auth {
            mechanism,
            initial_response: initial_response.into_owned(),
        },
        Request::Noop { value } => Request::Noop {
            value: value.into_owned(),
        },
        Request::Vrfy { value } => Request::Vrfy {
            value: value.into_owned(),
        },
        Request::Expn { value } => Request::Expn {
            value: value.into_owned(),
        },
        Request::Help { value } => Request::Help {
            value: value.into_owned(),
        },
        Request::Etrn { name } => Request::Etrn {
            name: name.into_owned(),
        },
        Request::Atrn { domains } => Request::Atrn {
            domains: domains.into_iter().map(Cow::into_owned).collect(),
        },
        Request::Burl { uri, is_last } => Request::Burl {
            uri: uri.into_owned(),
            is_last,
        },
        Request::StartTls => Request::StartTls,
        Request::Data => Request::Data,
        Request::Rset => Request::Rset,
        Request::Quit => Request::Quit,
    }
}

/// Feeds a byte stream through the DATA reader split at LF, as a session
/// does: for tests and fuzzing. Returns the outcome, if the data ended.
pub fn read_data_from(bytes: &[u8], max_size: usize, max_line: usize) -> Option<Data> {
    let mut r = DataReader::new(max_size, 0);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            return None;
        }
        if line.len() > max_line {
            r.too_long_line(line.ends_with(b"\r\n"));
            continue;
        }
        if let Some(d) = r.line(line) {
            return Some(d);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ends_only_at_crlf_dot_crlf() {
        let table: &[(&[u8], Option<Data>)] = &[
            (b"a\r\n.\r\n", Some(Data::Complete(b"a\r\n".to_vec()))),
            (b".\r\n", Some(Data::Complete(Vec::new()))),
            (b"..x\r\n.\r\n", Some(Data::Complete(b".x\r\n".to_vec()))),
            (b"a\n.\n", None),
            (b"a\n.\nb\r\n.\r\n", Some(Data::BareNewline)),
            (b"a\r\n.\nMAIL\r\n.\r\n", Some(Data::BareNewline)),
            (b"a\n.\r\nMAIL\r\n.\r\n", Some(Data::BareNewline)),
            (b"a\r.\r\nx\r\n.\r\n", Some(Data::BareNewline)),
            (b"xxxxxxxxxxxx\r\n.\r\n", Some(Data::LineTooLong)),
        ];
        for (input, want) in table {
            assert_eq!(
                read_data_from(input, 1000, 10).as_ref(),
                want.as_ref(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            read_data_from(b"12345\r\n67890\r\n.\r\n", 8, 100),
            Some(Data::TooBig)
        );
    }

    #[test]
    fn commands_parse() {
        assert!(matches!(
            parse_command(b"MAIL FROM:<a@b.c> SIZE=10\r\n"),
            Ok(Request::Mail { .. })
        ));
        assert!(parse_command(b"BOGUS\r\n").is_err());
    }
}
