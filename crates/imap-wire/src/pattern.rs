//! LIST/LSUB patterns (RFC 9051 6.3.9): "*" matches any characters, "%"
//! any characters but the hierarchy separator; the reference is prefixed.

/// Whether `name` matches `pattern` with hierarchy separator `sep`.
/// INBOX matches case-insensitively.
pub fn matches(pattern: &str, name: &str, sep: char) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if is_inbox(name) {
        // Compare with the pattern's INBOX prefix case-folded.
        let up: String = p.iter().collect::<String>();
        let folded = fold_inbox(&up);
        let fp: Vec<char> = folded.chars().collect();
        return glob(&fp, &n, sep);
    }
    glob(&p, &n, sep)
}

fn is_inbox(name: &str) -> bool {
    name == "INBOX" || name.starts_with("INBOX/")
}

fn fold_inbox(p: &str) -> String {
    // `get` keeps this safe when byte 5 is inside a multi-byte character
    // (found by the fuzzer: "hell\u{fffd}").
    match (p.get(..5), p.get(5..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case("inbox") => format!("INBOX{rest}"),
        _ => p.to_string(),
    }
}

fn glob(p: &[char], n: &[char], sep: char) -> bool {
    // Iterative matcher with backtracking over "*" and "%".
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
            star = Some((pi, ni, p[pi] == '%'));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn, percent)) = star {
            if percent && n[sn] == sep {
                return false;
            }
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1, percent));
        } else {
            return false;
        }
    }
    while pi < p.len() && (p[pi] == '*' || p[pi] == '%') {
        pi += 1;
    }
    pi == p.len()
}

/// Joins a LIST reference and pattern (RFC 9051 6.3.9: the reference is
/// prefixed; a pattern starting with the separator is absolute).
pub fn join(reference: &str, pattern: &str, sep: char) -> String {
    if reference.is_empty() || pattern.starts_with(sep) {
        return pattern.to_string();
    }
    if reference.ends_with(sep) {
        format!("{reference}{pattern}")
    } else {
        format!("{reference}{sep}{pattern}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", "a/b/c", '/'));
        assert!(matches("%", "a", '/'));
        assert!(!matches("%", "a/b", '/'));
        assert!(matches("a/%", "a/b", '/'));
        assert!(!matches("a/%", "a/b/c", '/'));
        assert!(matches("a/*", "a/b/c", '/'));
        assert!(matches("inbox", "INBOX", '/'));
        assert!(matches("Inbox/%", "INBOX/x", '/'));
        assert!(!matches("inbox", "Inbox2", '/'));
        assert!(matches("*x*", "abxcd", '/'));
        assert!(matches("%x%", "abxcd", '/'));
        assert!(!matches("%x%", "a/bxcd", '/'));
        assert!(matches("S%", "Sent", '/'));
        assert!(!matches("S%", "Trash", '/'));
        assert!(matches("", "", '/'));
        // Multi-byte characters around the INBOX prefix (fuzzer regression).
        assert!(!matches("hell\u{fffd}", "INBOX", '/'));
        assert!(!matches("inbo\u{e9}x", "INBOX", '/'));
        assert!(matches("INBOX\u{e9}*", "INBOX\u{e9}t\u{e9}", '/'));
    }

    #[test]
    fn references() {
        assert_eq!(join("", "%", '/'), "%");
        assert_eq!(join("a", "%", '/'), "a/%");
        assert_eq!(join("a/", "%", '/'), "a/%");
        assert_eq!(join("a", "/x", '/'), "/x");
    }
}
