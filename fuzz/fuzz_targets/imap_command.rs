//! The IMAP command path: framing, extension pre-parsers, decoding and the
//! pure helpers applied to decoded commands (imap_wire::fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imap_wire::fuzz::command_path(data);
});
