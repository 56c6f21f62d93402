//! SMTP: every line through the command parser (command state), and the
//! whole input through the DATA reader (data state).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for line in data.split_inclusive(|&b| b == b'\n') {
        let _ = smtp_wire::parse_command(line);
    }
    let max_size = 4096;
    if let Some(smtp_wire::Data::Complete(body)) = smtp_wire::read_data_from(data, max_size, 256) {
        assert!(body.len() <= max_size);
    }
});
