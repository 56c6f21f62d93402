//! Byte-stuffing of multi-line responses (RFC 1939 section 3), done on a
//! stream of chunks so a large message never has to be held in memory.
//!
//! Every line starting with "." gets another "." in front; line ends are
//! sent as CRLF whatever the stored message used (a bare LF becomes CRLF, a
//! bare CR is kept as data), and the response ends with CRLF "." CRLF. With
//! a line limit (TOP), the header and at most `n` body lines are sent.

#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    prev_cr: bool,
    /// TOP: body lines still to send once the header has ended; `None`:
    /// no limit.
    body_lines_left: Option<u32>,
    in_body: bool,
    /// Whether the current line is empty so far (to see the blank line that
    /// ends the header).
    line_empty: bool,
    done: bool,
}

impl DotStuffer {
    /// `top`: send the header and at most this many body lines.
    pub fn new(top: Option<u32>) -> Self {
        Self {
            at_line_start: true,
            prev_cr: false,
            body_lines_left: top,
            in_body: false,
            line_empty: true,
            done: false,
        }
    }

    /// Whether the line limit has been reached and the rest can be skipped.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the stuffed form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64);
        for &b in chunk {
            if self.done {
                return;
            }
            if self.at_line_start {
                // Before the first byte of a body line under a TOP limit.
                if self.in_body && self.body_lines_left == Some(0) {
                    self.done = true;
                    return;
                }
                if b == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
            }
            match b {
                b'\n' => {
                    if !self.prev_cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.end_line();
                }
                b'\r' => {
                    // A bare CR (one not followed by LF) is kept as data.
                    out.push(b'\r');
                    self.prev_cr = true;
                    continue;
                }
                _ => {
                    self.line_empty = false;
                    out.push(b);
                }
            }
            self.prev_cr = false;
        }
    }

    fn end_line(&mut self) {
        if self.in_body {
            if let Some(n) = &mut self.body_lines_left {
                *n = n.saturating_sub(1);
            }
        } else if self.line_empty {
            self.in_body = true;
        }
        self.at_line_start = true;
        self.line_empty = true;
    }

    /// Ends the response: a final CRLF if the data did not end with one,
    /// then "." CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            if self.prev_cr {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(top: Option<u32>, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = DotStuffer::new(top);
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn stuffs_dots_and_normalises_line_ends() {
        assert_eq!(stuff(None, &[b"a\r\n.b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(None, &[b"a\n.\nb"]), b"a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(stuff(None, &[b""]), b".\r\n");
        assert_eq!(stuff(None, &[b"x\r"]), b"x\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let whole: &[u8] = b"H: v\r\n\r\n.one\r\ntwo\r\n..three\r\n";
        let expect = stuff(None, &[whole]);
        for split in 0..whole.len() {
            let (a, b) = whole.split_at(split);
            assert_eq!(stuff(None, &[a, b]), expect, "split at {split}");
        }
        assert_eq!(
            expect,
            b"H: v\r\n\r\n..one\r\ntwo\r\n...three\r\n.\r\n".to_vec()
        );
    }

    #[test]
    fn top_sends_header_and_n_lines() {
        let m: &[u8] = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(stuff(Some(0), &[m]), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            stuff(Some(2), &[m]),
            b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
        );
        assert_eq!(stuff(Some(9), &[m]), stuff(None, &[m]));
        for split in 0..m.len() {
            let (a, b) = m.split_at(split);
            assert_eq!(
                stuff(Some(1), &[a, b]),
                b"A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n",
                "split at {split}"
            );
        }
    }
}
