//! ManageSieve commands: every line of the input as a command (a literal
//! marker at its end taking the following bytes as the literal), and the
//! server's string encoding read back.
#![no_main]

use managesieve_wire::{Part, parse, parse_string_line, string, trailing_literal};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        let (before, marker) = trailing_literal(line);
        let mut parts = vec![Part::Line(before.to_vec())];
        if let Some(m) = marker {
            let n = (m.len as usize).min(rest.len());
            parts.push(Part::Literal(rest[..n].to_vec()));
            rest = &rest[n..];
        }
        let _ = parse(&parts);
        let _ = parse_string_line(line);
    }
    let written = string(data);
    if written.first() == Some(&b'"') {
        assert_eq!(parse_string_line(&written).as_deref(), Some(data));
    }
});
