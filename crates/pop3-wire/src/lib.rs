//! POP3 on the wire: commands in, responses out, no I/O.
//!
//! Implements the command grammar of RFC 1939 (section 3: a case-insensitive
//! keyword, arguments separated by single spaces, CRLF), the extensions of
//! RFC 2449 (CAPA, response codes), RFC 2595 (STLS), RFC 5034 (AUTH with an
//! optional initial response) and RFC 6856 (UTF8), and the dot-stuffing of
//! multi-line responses (section 3).
//!
//! ```text
//! command  = keyword *(SP argument) CRLF      ; at most 255 octets (RFC 2449)
//! keyword  = 3*4VCHAR
//! msg      = 1*DIGIT                          ; a message number, 1-based
//! ```

mod stuff;

pub use stuff::DotStuffer;

/// Longest command line accepted (RFC 2449 section 4: 255 octets including
/// the CRLF); SASL response lines may be longer.
pub const MAX_COMMAND_LINE: usize = 255;
/// Longest SASL response line: a base64 PLAIN response, or an OAUTHBEARER
/// one carrying a JWT (identity providers' tokens run to a few KiB).
pub const MAX_SASL_LINE: usize = 16 * 1024;

/// A message number as the client sees it (1-based, per session).
pub type MsgNum = u32;

#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(String),
    Apop {
        name: String,
        digest: String,
    },
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
    Stls,
    Capa,
    Utf8,
    Stat,
    List(Option<MsgNum>),
    Uidl(Option<MsgNum>),
    Retr(MsgNum),
    Top(MsgNum, u32),
    Dele(MsgNum),
    Noop,
    Rset,
    Quit,
}

impl std::fmt::Debug for Command {
    /// Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Pass(_) => write!(f, "Pass(<redacted>)"),
            Command::Auth { mechanism, .. } => write!(f, "Auth({mechanism}, <redacted>)"),
            Command::User(u) => write!(f, "User({u:?})"),
            Command::Apop { name, .. } => write!(f, "Apop({name:?}, <redacted>)"),
            Command::Stls => write!(f, "Stls"),
            Command::Capa => write!(f, "Capa"),
            Command::Utf8 => write!(f, "Utf8"),
            Command::Stat => write!(f, "Stat"),
            Command::List(n) => write!(f, "List({n:?})"),
            Command::Uidl(n) => write!(f, "Uidl({n:?})"),
            Command::Retr(n) => write!(f, "Retr({n})"),
            Command::Top(n, l) => write!(f, "Top({n}, {l})"),
            Command::Dele(n) => write!(f, "Dele({n})"),
            Command::Noop => write!(f, "Noop"),
            Command::Rset => write!(f, "Rset"),
            Command::Quit => write!(f, "Quit"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown command")]
    Unknown,
    #[error("syntax: {0}")]
    Syntax(&'static str),
    #[error("invalid message number")]
    BadNumber,
    #[error("command line is not valid UTF-8")]
    NotUtf8,
}

/// Parses one command line (with or without its CRLF).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = strip_eol(line);
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (keyword, rest) = match line.split_once(' ') {
        Some((k, r)) => (k, Some(r)),
        None => (line, None),
    };
    let args: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let none = |c: Command| {
        if rest.is_some() {
            Err(ParseError::Syntax("this command takes no argument"))
        } else {
            Ok(c)
        }
    };
    match keyword.to_ascii_uppercase().as_str() {
        "USER" => match rest {
            Some(name) if !name.is_empty() => Ok(Command::User(name.to_string())),
            _ => Err(ParseError::Syntax("USER name")),
        },
        // The password is the rest of the line: it may contain spaces.
        "PASS" => match rest {
            Some(pw) => Ok(Command::Pass(pw.to_string())),
            None => Err(ParseError::Syntax("PASS string")),
        },
        "APOP" => match args.as_slice() {
            [name, digest] if !name.is_empty() && !digest.is_empty() => Ok(Command::Apop {
                name: name.to_string(),
                digest: digest.to_string(),
            }),
            _ => Err(ParseError::Syntax("APOP name digest")),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: String::new(),
                initial_response: None,
            }),
            [m] if !m.is_empty() => Ok(Command::Auth {
                mechanism: m.to_ascii_uppercase(),
                initial_response: None,
            }),
            [m, ir] if !m.is_empty() => Ok(Command::Auth {
                mechanism: m.to_ascii_uppercase(),
                initial_response: Some(ir.to_string()),
            }),
            _ => Err(ParseError::Syntax("AUTH mechanism [initial-response]")),
        },
        "STLS" => none(Command::Stls),
        "CAPA" => none(Command::Capa),
        "UTF8" => none(Command::Utf8),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "QUIT" => none(Command::Quit),
        "LIST" => optional_msg(&args, rest.is_some()).map(Command::List),
        "UIDL" => optional_msg(&args, rest.is_some()).map(Command::Uidl),
        "RETR" => match args.as_slice() {
            [n] => Ok(Command::Retr(msg_num(n)?)),
            _ => Err(ParseError::Syntax("RETR msg")),
        },
        "DELE" => match args.as_slice() {
            [n] => Ok(Command::Dele(msg_num(n)?)),
            _ => Err(ParseError::Syntax("DELE msg")),
        },
        "TOP" => match args.as_slice() {
            [n, lines] => Ok(Command::Top(
                msg_num(n)?,
                lines.parse().map_err(|_| ParseError::Syntax("TOP msg n"))?,
            )),
            _ => Err(ParseError::Syntax("TOP msg n")),
        },
        _ => Err(ParseError::Unknown),
    }
}

fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn optional_msg(args: &[&str], present: bool) -> Result<Option<MsgNum>, ParseError> {
    match (present, args) {
        (false, _) => Ok(None),
        (true, [n]) => Ok(Some(msg_num(n)?)),
        _ => Err(ParseError::Syntax("at most one message number")),
    }
}

fn msg_num(s: &str) -> Result<MsgNum, ParseError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber);
    }
    match s.parse::<MsgNum>() {
        Ok(0) | Err(_) => Err(ParseError::BadNumber),
        Ok(n) => Ok(n),
    }
}

/// RFC 2449 / RFC 3206 extended response codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespCode {
    InUse,
    LoginDelay,
    Auth,
    SysTemp,
    SysPerm,
    Utf8,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::Utf8 => "UTF8",
        }
    }
}

/// `+OK text` CRLF.
pub fn ok(text: &str) -> Vec<u8> {
    if text.is_empty() {
        b"+OK\r\n".to_vec()
    } else {
        format!("+OK {text}\r\n").into_bytes()
    }
}

/// `-ERR [CODE] text` CRLF.
pub fn err(code: Option<RespCode>, text: &str) -> Vec<u8> {
    match code {
        Some(c) => format!("-ERR [{}] {text}\r\n", c.as_str()).into_bytes(),
        None => format!("-ERR {text}\r\n").into_bytes(),
    }
}

/// A complete multi-line response: the `+OK` line, each line dot-stuffed,
/// and the terminating "." line.
pub fn multiline<I, S>(first: &str, lines: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = ok(first);
    let mut st = DotStuffer::new(None);
    for l in lines {
        st.push(l.as_ref().as_bytes(), &mut out);
        st.push(b"\r\n", &mut out);
    }
    st.finish(&mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let table: &[(&[u8], Command)] = &[
            (
                b"USER alice@example.org\r\n",
                Command::User("alice@example.org".into()),
            ),
            (b"pass two words\r\n", Command::Pass("two words".into())),
            (b"PASS \r\n", Command::Pass(String::new())),
            (b"STAT\r\n", Command::Stat),
            (b"list\r\n", Command::List(None)),
            (b"LIST 3\r\n", Command::List(Some(3))),
            (b"UIDL 12\n", Command::Uidl(Some(12))),
            (b"RETR 1\r\n", Command::Retr(1)),
            (b"TOP 2 0\r\n", Command::Top(2, 0)),
            (b"DELE 4\r\n", Command::Dele(4)),
            (b"NOOP\r\n", Command::Noop),
            (b"RSET\r\n", Command::Rset),
            (b"QUIT\r\n", Command::Quit),
            (b"CAPA\r\n", Command::Capa),
            (b"STLS\r\n", Command::Stls),
            (b"UTF8\r\n", Command::Utf8),
            (
                b"AUTH PLAIN AGFsaWNlAHB3\r\n",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial_response: Some("AGFsaWNlAHB3".into()),
                },
            ),
            (
                b"auth plain\r\n",
                Command::Auth {
                    mechanism: "PLAIN".into(),
                    initial_response: None,
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(
                parse(line).as_ref(),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn bad_commands_are_errors() {
        assert_eq!(parse(b"FOO\r\n"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR 0\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR -1\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 99999999999\r\n"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR\r\n"), Err(ParseError::Syntax("RETR msg")));
        assert_eq!(parse(b"RETR 1 2\r\n"), Err(ParseError::Syntax("RETR msg")));
        assert_eq!(
            parse(b"STAT 1\r\n"),
            Err(ParseError::Syntax("this command takes no argument"))
        );
        assert_eq!(parse(b"TOP 1\r\n"), Err(ParseError::Syntax("TOP msg n")));
        assert_eq!(parse(b"USER\r\n"), Err(ParseError::Syntax("USER name")));
        assert_eq!(parse(b"\xff\xfe\r\n"), Err(ParseError::NotUtf8));
        assert_eq!(parse(b"\r\n"), Err(ParseError::Unknown));
    }

    #[test]
    fn passwords_are_not_debug_printed() {
        let s = format!("{:?}", parse(b"PASS hunter2\r\n").unwrap());
        assert!(!s.contains("hunter2"));
    }

    #[test]
    fn responses_encode() {
        assert_eq!(ok(""), b"+OK\r\n");
        assert_eq!(
            err(Some(RespCode::InUse), "locked"),
            b"-ERR [IN-USE] locked\r\n"
        );
        assert_eq!(
            multiline("2 messages", ["1 120", ".hidden"]),
            b"+OK 2 messages\r\n1 120\r\n..hidden\r\n.\r\n"
        );
    }
}
