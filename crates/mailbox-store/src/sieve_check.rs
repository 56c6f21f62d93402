//! The one place a Sieve script is validated before it is stored
//! (PutScript, CheckScript): the script must be UTF-8 (RFC 5228 2.1) and
//! compile with the interpreter (`mail-sieve`), whose error names the line
//! and column.

use mailbox_api::pb;

/// Checks a script; `Err` carries where and why it is not valid.
pub fn check(content: &[u8]) -> Result<(), pb::SieveScriptError> {
    let text = std::str::from_utf8(content).map_err(|e| {
        let (line, column) = position(&content[..e.valid_up_to()]);
        pb::SieveScriptError {
            line,
            column,
            message: "the script is not valid UTF-8 (RFC 5228 2.1)".into(),
        }
    })?;
    interpreter_check(text)
}

/// The 1-based line and column just after `before`.
fn position(before: &[u8]) -> (u32, u32) {
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The interpreter's verdict. An `include` is resolved when the script
/// runs, not here (RFC 6609 3.2: a missing script is a run-time error),
/// so a script may be uploaded before the ones it includes.
fn interpreter_check(text: &str) -> Result<(), pb::SieveScriptError> {
    mail_sieve::compile(text, &mail_sieve::NoIncludes)
        .map(|_| ())
        .map_err(|e| pb::SieveScriptError {
            line: e.line,
            column: e.column,
            message: e.message,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_are_placed() {
        let e = check(b"keep;\r\nfileinto \"a\xffb\";").unwrap_err();
        assert_eq!((e.line, e.column), (2, 12));
        assert!(check("require \"fileinto\";\nfileinto \"Ünïcode\";".as_bytes()).is_ok());
    }
}
