//! Lexer and parser for the Sieve grammar (RFC 5228 section 8).
//!
//! ```text
//! commands    = *command
//! command     = identifier arguments (";" / block)
//! block       = "{" commands "}"
//! arguments   = *argument [ test / test-list ]
//! argument    = string-list / number / tag
//! string-list = "[" string *("," string) "]" / string
//! test        = identifier arguments
//! test-list   = "(" test *("," test) ")"
//! string      = quoted-string / multi-line
//! number      = 1*DIGIT [ "K" / "M" / "G" ]
//! tag         = ":" identifier
//! ```
//!
//! Comments (`# ...` to the end of the line and `/* ... */`) and white space
//! separate tokens. Line ends may be CRLF or a bare LF.

use crate::CompileError;

/// A position in the source, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub(crate) fn error(self, message: impl Into<String>) -> CompileError {
        CompileError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// How deep blocks and test lists may nest.
pub(crate) const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Tag(String),
    Number(u64),
    Str(String),
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Semicolon,
    Eof,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier '{s}'"),
        Tok::Tag(s) => format!("tag ':{s}'"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(_) => "string".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::LBrace => "'{'".into(),
        Tok::RBrace => "'}'".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Semicolon => "';'".into(),
        Tok::Eof => "end of script".into(),
    }
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    i: usize,
    line: u32,
    line_start: usize,
}

impl<'a> Lexer<'a> {
    fn pos(&self) -> Pos {
        let col = self.text[self.line_start..self.i].chars().count() as u32 + 1;
        Pos {
            line: self.line,
            column: col,
        }
    }

    /// An error at the end of the script (where the parser stopped, as
    /// Pigeonhole reports it) naming where the unterminated token began.
    fn unterminated(&mut self, what: &str, start: Pos) -> CompileError {
        self.i = self.src.len();
        let mut line = 1;
        let mut line_start = 0;
        for (i, &b) in self.src.iter().enumerate() {
            if b == b'\n' {
                line += 1;
                line_start = i + 1;
            }
        }
        self.line = line;
        self.line_start = line_start;
        self.pos().error(format!(
            "unterminated {what} (it starts at line {}, column {})",
            start.line, start.column
        ))
    }

    fn newline(&mut self) {
        self.line += 1;
        self.line_start = self.i;
    }

    fn skip_space(&mut self) -> Result<(), CompileError> {
        loop {
            match self.src.get(self.i) {
                Some(b' ' | b'\t' | b'\r') => self.i += 1,
                Some(b'\n') => {
                    self.i += 1;
                    self.newline();
                }
                Some(b'#') => {
                    while let Some(&c) = self.src.get(self.i) {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                Some(b'/') if self.src.get(self.i + 1) == Some(&b'*') => {
                    let start = self.pos();
                    self.i += 2;
                    loop {
                        match self.src.get(self.i) {
                            None => return Err(self.unterminated("comment", start)),
                            Some(b'*') if self.src.get(self.i + 1) == Some(&b'/') => {
                                self.i += 2;
                                break;
                            }
                            Some(b'\n') => {
                                self.i += 1;
                                self.newline();
                            }
                            Some(_) => self.i += 1,
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next(&mut self) -> Result<(Tok, Pos), CompileError> {
        self.skip_space()?;
        let pos = self.pos();
        let Some(&c) = self.src.get(self.i) else {
            return Ok((Tok::Eof, pos));
        };
        let single = match c {
            b'[' => Some(Tok::LBracket),
            b']' => Some(Tok::RBracket),
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            b';' => Some(Tok::Semicolon),
            _ => None,
        };
        if let Some(t) = single {
            self.i += 1;
            return Ok((t, pos));
        }
        if c == b'"' {
            return self.quoted(pos);
        }
        if c.is_ascii_digit() {
            let start = self.i;
            while self.src.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let digits = &self.text[start..self.i];
            let mut n: u64 = digits.parse().map_err(|_| pos.error("number too large"))?;
            let mult: u64 = match self.src.get(self.i) {
                Some(b'K' | b'k') => 1 << 10,
                Some(b'M' | b'm') => 1 << 20,
                Some(b'G' | b'g') => 1 << 30,
                _ => 1,
            };
            if mult != 1 {
                self.i += 1;
                n = n
                    .checked_mul(mult)
                    .ok_or_else(|| pos.error("number too large"))?;
            }
            if n > u64::from(u32::MAX) * 1024 {
                return Err(pos.error("number too large"));
            }
            if self
                .src
                .get(self.i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                return Err(pos.error("invalid number"));
            }
            return Ok((Tok::Number(n), pos));
        }
        if c == b':' {
            self.i += 1;
            let id = self.identifier();
            if id.is_empty() {
                return Err(pos.error("':' must be followed by a tag name"));
            }
            return Ok((Tok::Tag(id.to_ascii_lowercase()), pos));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let id = self.identifier();
            if id.eq_ignore_ascii_case("text") && self.src.get(self.i) == Some(&b':') {
                self.i += 1;
                return self.multiline(pos);
            }
            return Ok((Tok::Ident(id.to_ascii_lowercase()), pos));
        }
        let ch = self.text[self.i..].chars().next().unwrap_or('?');
        Err(pos.error(format!("unexpected character '{}'", ch.escape_default())))
    }

    fn identifier(&mut self) -> String {
        let start = self.i;
        while self
            .src
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        self.text[start..self.i].to_string()
    }

    fn quoted(&mut self, pos: Pos) -> Result<(Tok, Pos), CompileError> {
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        loop {
            match self.src.get(self.i) {
                None => return Err(self.unterminated("string", pos)),
                Some(b'"') => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Ok((Tok::Str(out), pos));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    // RFC 5228 2.4.2: "\" followed by any character is that
                    // character.
                    match self.text[self.i..].chars().next() {
                        None => return Err(self.unterminated("string", pos)),
                        Some(ch) => {
                            if ch == '\n' {
                                self.i += 1;
                                self.newline();
                            } else {
                                self.i += ch.len_utf8();
                            }
                            out.push(ch);
                        }
                    }
                    run = self.i;
                }
                Some(b'\n') => {
                    self.i += 1;
                    self.newline();
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `text:` already read: the rest of the line, then lines up to a lone
    /// ".", with a leading ".." unstuffed to ".".
    fn multiline(&mut self, pos: Pos) -> Result<(Tok, Pos), CompileError> {
        while matches!(self.src.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        match self.src.get(self.i) {
            Some(b'#') => {
                while self.src.get(self.i).is_some_and(|&c| c != b'\n') {
                    self.i += 1;
                }
            }
            Some(b'\r') if self.src.get(self.i + 1) == Some(&b'\n') => self.i += 1,
            Some(b'\n') => {}
            _ => return Err(pos.error("'text:' must be followed by a line end")),
        }
        if self.src.get(self.i) != Some(&b'\n') {
            return Err(self.unterminated("multi-line string", pos));
        }
        self.i += 1;
        self.newline();
        let mut out = String::new();
        loop {
            if self.i >= self.src.len() {
                return Err(self.unterminated("multi-line string", pos));
            }
            let start = self.i;
            let end = memchr_nl(&self.src[start..]).map_or(self.src.len(), |n| start + n);
            let mut line = &self.text[start..end];
            let has_nl = end < self.src.len();
            self.i = if has_nl { end + 1 } else { end };
            if has_nl {
                self.newline();
            }
            let bare = line.strip_suffix('\r').unwrap_or(line);
            if bare == "." {
                return Ok((Tok::Str(out), pos));
            }
            if line.starts_with('.') {
                line = &line[1..];
            }
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            if has_nl {
                out.push_str("\r\n");
            }
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// An argument as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Tag(String, Pos),
    Number(u64, Pos),
    /// A single string (`list == false`) or a string list.
    Strings {
        items: Vec<String>,
        list: bool,
        pos: Pos,
    },
}

impl Arg {
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Arg::Tag(_, p) | Arg::Number(_, p) => *p,
            Arg::Strings { pos, .. } => *pos,
        }
    }
}

/// A test as written: its name, arguments and nested tests.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TestNode {
    pub name: String,
    pub pos: Pos,
    pub args: Vec<Arg>,
    pub tests: Vec<TestNode>,
    /// Whether the nested tests were written as a "( ... )" list.
    pub test_list: bool,
}

/// A command as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommandNode {
    pub name: String,
    pub pos: Pos,
    pub args: Vec<Arg>,
    pub tests: Vec<TestNode>,
    pub test_list: bool,
    pub block: Option<Vec<CommandNode>>,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    pos: Pos,
    depth: usize,
}

/// Parses a whole script into its command tree.
pub(crate) fn parse(source: &str) -> Result<Vec<CommandNode>, CompileError> {
    let mut lex = Lexer {
        src: source.as_bytes(),
        text: source,
        i: 0,
        line: 1,
        line_start: 0,
    };
    let (tok, pos) = lex.next()?;
    let mut p = Parser {
        lex,
        tok,
        pos,
        depth: 0,
    };
    let cmds = p.commands()?;
    if p.tok != Tok::Eof {
        return Err(p.pos.error(format!("unexpected {}", describe(&p.tok))));
    }
    Ok(cmds)
}

impl Parser<'_> {
    fn bump(&mut self) -> Result<Tok, CompileError> {
        let (t, p) = self.lex.next()?;
        self.pos = p;
        Ok(std::mem::replace(&mut self.tok, t))
    }

    fn enter(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self
                .pos
                .error(format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    fn commands(&mut self) -> Result<Vec<CommandNode>, CompileError> {
        let mut out = Vec::new();
        while let Tok::Ident(_) = self.tok {
            out.push(self.command()?);
        }
        Ok(out)
    }

    fn command(&mut self) -> Result<CommandNode, CompileError> {
        let pos = self.pos;
        let Tok::Ident(name) = self.bump()? else {
            return Err(pos.error("expected a command"));
        };
        let args = self.arguments()?;
        let (tests, test_list) = self.tests_opt()?;
        let block = match self.tok {
            Tok::Semicolon => {
                self.bump()?;
                None
            }
            Tok::LBrace => {
                self.enter()?;
                self.bump()?;
                let cmds = self.commands()?;
                if self.tok != Tok::RBrace {
                    return Err(self
                        .pos
                        .error(format!("expected '}}' but found {}", describe(&self.tok))));
                }
                self.bump()?;
                self.depth -= 1;
                Some(cmds)
            }
            _ => {
                return Err(self.pos.error(format!(
                    "expected ';' or '{{' after command '{name}' but found {}",
                    describe(&self.tok)
                )));
            }
        };
        Ok(CommandNode {
            name,
            pos,
            args,
            tests,
            test_list,
            block,
        })
    }

    fn arguments(&mut self) -> Result<Vec<Arg>, CompileError> {
        let mut args = Vec::new();
        loop {
            let pos = self.pos;
            match &self.tok {
                Tok::Tag(t) => {
                    args.push(Arg::Tag(t.clone(), pos));
                    self.bump()?;
                }
                Tok::Number(n) => {
                    args.push(Arg::Number(*n, pos));
                    self.bump()?;
                }
                Tok::Str(_) => {
                    let s = match self.bump()? {
                        Tok::Str(s) => s,
                        _ => return Err(pos.error("internal parser error")),
                    };
                    args.push(Arg::Strings {
                        items: vec![s],
                        list: false,
                        pos,
                    });
                }
                Tok::LBracket => {
                    self.bump()?;
                    let mut items = Vec::new();
                    loop {
                        match self.bump()? {
                            Tok::Str(s) => items.push(s),
                            other => {
                                return Err(self.pos_of_prev(pos).error(format!(
                                    "expected a string in the list but found {}",
                                    describe(&other)
                                )));
                            }
                        }
                        match self.bump()? {
                            Tok::Comma => continue,
                            Tok::RBracket => break,
                            other => {
                                return Err(pos.error(format!(
                                    "expected ',' or ']' in a string list but found {}",
                                    describe(&other)
                                )));
                            }
                        }
                    }
                    args.push(Arg::Strings {
                        items,
                        list: true,
                        pos,
                    });
                }
                _ => return Ok(args),
            }
        }
    }

    fn pos_of_prev(&self, fallback: Pos) -> Pos {
        if self.pos.line == 0 {
            fallback
        } else {
            self.pos
        }
    }

    fn tests_opt(&mut self) -> Result<(Vec<TestNode>, bool), CompileError> {
        match self.tok {
            Tok::Ident(_) => Ok((vec![self.test()?], false)),
            Tok::LParen => {
                self.enter()?;
                self.bump()?;
                let mut tests = Vec::new();
                loop {
                    tests.push(self.test()?);
                    match self.bump()? {
                        Tok::Comma => continue,
                        Tok::RParen => break,
                        other => {
                            return Err(self.pos.error(format!(
                                "expected ',' or ')' in a test list but found {}",
                                describe(&other)
                            )));
                        }
                    }
                }
                self.depth -= 1;
                Ok((tests, true))
            }
            _ => Ok((Vec::new(), false)),
        }
    }

    fn test(&mut self) -> Result<TestNode, CompileError> {
        let pos = self.pos;
        let name = match self.bump()? {
            Tok::Ident(n) => n,
            other => {
                return Err(pos.error(format!("expected a test but found {}", describe(&other))));
            }
        };
        self.enter()?;
        let args = self.arguments()?;
        let (tests, test_list) = self.tests_opt()?;
        self.depth -= 1;
        Ok(TestNode {
            name,
            pos,
            args,
            tests,
            test_list,
        })
    }
}
