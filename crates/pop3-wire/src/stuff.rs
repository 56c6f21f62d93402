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

    /// Appends the stuffed form of `chunk` to `out`. Works a line at a
    /// time (the data between line feeds is copied as it is), since this
    /// runs over every byte a RETR sends.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64);
        if self.body_lines_left.is_none() {
            self.push_unlimited(chunk, out);
            return;
        }
        while !chunk.is_empty() && !self.done {
            if self.at_line_start {
                // Before the first byte of a body line under a TOP limit.
                if self.in_body && self.body_lines_left == Some(0) {
                    self.done = true;
                    return;
                }
                if chunk[0] == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
            }
            let (line, lf, rest) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (&chunk[..i], true, &chunk[i + 1..]),
                None => (chunk, false, &chunk[chunk.len()..]),
            };
            if let Some(&last) = line.last() {
                // Bare CRs (not followed by LF) are kept as data; a line
                // of nothing but CRs still counts as empty.
                out.extend_from_slice(line);
                if self.line_empty && line.iter().any(|&b| b != b'\r') {
                    self.line_empty = false;
                }
                self.prev_cr = last == b'\r';
            }
            if lf {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.end_line();
                self.prev_cr = false;
            }
            chunk = rest;
        }
    }

    /// `push` without a line limit (RETR, the bulk of what a POP3 server
    /// sends): no header or line counting, so the data between the line
    /// ends that need a change (a bare LF, a "." after a line end) is
    /// copied in one piece; a message with CRLF line ends and no line
    /// beginning with "." is one copy.
    fn push_unlimited(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else {
            return;
        };
        if self.at_line_start && chunk[0] == b'.' {
            out.push(b'.');
        }
        let mut copied = 0;
        for i in memchr::memchr_iter(b'\n', chunk) {
            let cr_before = match i.checked_sub(1) {
                Some(p) => chunk[p] == b'\r',
                None => self.prev_cr,
            };
            let dot_after = chunk.get(i + 1) == Some(&b'.');
            if !cr_before || dot_after {
                out.extend_from_slice(&chunk[copied..i]);
                if !cr_before {
                    out.push(b'\r');
                }
                out.push(b'\n');
                if dot_after {
                    out.push(b'.');
                }
                copied = i + 1;
            }
        }
        out.extend_from_slice(&chunk[copied..]);
        // A line end at the very end leaves a "." at the start of the next
        // chunk to the check above; a CR there may pair with its LF.
        self.at_line_start = last == b'\n';
        self.prev_cr = last == b'\r';
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

    /// The line-at-a-time stuffer against a byte-at-a-time statement of
    /// the rules, over awkward inputs split everywhere.
    #[test]
    fn matches_the_byte_rules() {
        fn reference(top: Option<u32>, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let (mut start, mut prev_cr, mut in_body, mut empty) = (true, false, false, true);
            let mut left = top;
            for &b in data {
                if start {
                    if in_body && left == Some(0) {
                        out.extend_from_slice(b".\r\n");
                        return out;
                    }
                    if b == b'.' {
                        out.push(b'.');
                    }
                    start = false;
                }
                match b {
                    b'\n' => {
                        if !prev_cr {
                            out.push(b'\r');
                        }
                        out.push(b'\n');
                        if in_body {
                            left = left.map(|n| n.saturating_sub(1));
                        } else if empty {
                            in_body = true;
                        }
                        start = true;
                        empty = true;
                        prev_cr = false;
                    }
                    b'\r' => {
                        out.push(b'\r');
                        prev_cr = true;
                    }
                    _ => {
                        empty = false;
                        out.push(b);
                        prev_cr = false;
                    }
                }
            }
            if !start {
                out.extend_from_slice(if prev_cr { b"\n" } else { b"\r\n" });
            }
            out.extend_from_slice(b".\r\n");
            out
        }
        let inputs: [&[u8]; 6] = [
            b"A: 1\r\n\r\n.x\r\ny\n\n.\r\n..\rz\r\r\nend",
            b"\r\n\r\n.\n.\r.\r\n",
            b"H: \r\r\n\r\r\nbody\r",
            b"no newline at all",
            b".\n.\n.\n",
            b"\r\r\r\n\n\r\n.a\r\nb\r\nc\r\nd\r\n",
        ];
        for data in inputs {
            // Without a limit (the copy-in-runs path), cut in three too.
            let want = reference(None, data);
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    let got = stuff(None, &[&data[..i], &data[i..j], &data[j..]]);
                    assert_eq!(got, want, "{data:?} cut at {i} and {j}");
                }
            }
            for top in [None, Some(0), Some(1), Some(2)] {
                let want = reference(top, data);
                for split in 0..=data.len() {
                    let (a, b) = data.split_at(split);
                    assert_eq!(
                        String::from_utf8_lossy(&stuff(top, &[a, b])),
                        String::from_utf8_lossy(&want),
                        "{data:?} top {top:?} split at {split}"
                    );
                }
            }
        }
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
