//! Just enough PromQL reading to check queries against the series a system
//! exports: which metric names an expression selects, which label names
//! its matchers use, and which labels each aggregation groups by (with the
//! metrics it aggregates). Not a parser: string values, range/subquery
//! brackets and numbers are skipped, and operators are not understood,
//! which is all the check needs.

/// What an expression refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// Every selector: the metric name and the label names of its matchers
    /// (`__name__` left out).
    pub selectors: Vec<(String, Vec<String>)>,
    /// Every aggregation's `by (...)`/`without (...)` labels, with the
    /// metric names selected inside the aggregation.
    pub groupings: Vec<(Vec<String>, Vec<String>)>,
    /// Labels of vector matching (`on`, `ignoring`, `group_left`,
    /// `group_right`); they apply to the operands, so to the whole
    /// expression's metrics.
    pub matching: Vec<String>,
}

impl Refs {
    /// Every metric name selected, in order of appearance (repeats kept).
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.selectors.iter().map(|(m, _)| m.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    LParen,
    RParen,
    /// `{...}`: each matcher's label name and, for `=`, its value.
    Braces(Vec<(String, Option<String>)>),
    /// Anything skipped: strings, numbers, `[...]`, operators, commas,
    /// Grafana `$variables`.
    Other,
}

const AGGREGATORS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words that are never metric names (PromQL keywords are case-insensitive).
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "inf",
    "nan",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Skips a quoted string starting at `chars[i]`; returns the index after it
/// and its (unescaped enough) content.
fn string_at(chars: &[char], mut i: usize) -> Result<(usize, String), String> {
    let quote = chars[i];
    i += 1;
    let mut s = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && quote != '`' {
            if let Some(n) = chars.get(i + 1) {
                s.push(*n);
            }
            i += 2;
            continue;
        }
        if c == quote {
            return Ok((i + 1, s));
        }
        s.push(c);
        i += 1;
    }
    Err(format!("unterminated string {quote}{s}"))
}

fn tokens(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => {
                i = string_at(&chars, i)?.0;
                out.push(Tok::Other);
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '[' => {
                // Range or subquery: durations, `:` and Grafana variables.
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                if i == chars.len() {
                    return Err("unterminated [".into());
                }
                i += 1;
                out.push(Tok::Other);
            }
            '{' => {
                i += 1;
                let mut matchers = Vec::new();
                loop {
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    match chars.get(i) {
                        None => return Err("unterminated {".into()),
                        Some('}') => {
                            i += 1;
                            break;
                        }
                        Some(&c) if is_ident_start(c) => {}
                        Some(&c) => return Err(format!("unexpected {c:?} in a label matcher")),
                    }
                    let start = i;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                    let label: String = chars[start..i].iter().collect();
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    let op: String = chars[i..]
                        .iter()
                        .take_while(|c| matches!(c, '=' | '!' | '~'))
                        .collect();
                    if !matches!(op.as_str(), "=" | "!=" | "=~" | "!~") {
                        return Err(format!("label {label}: bad matcher operator {op:?}"));
                    }
                    i += op.len();
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    if !matches!(chars.get(i), Some('"' | '\'' | '`')) {
                        return Err(format!("label {label}: matcher value must be a string"));
                    }
                    let (next, value) = string_at(&chars, i)?;
                    i = next;
                    matchers.push((label, (op == "=").then_some(value)));
                }
                out.push(Tok::Braces(matchers));
            }
            _ if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            '$' => {
                // A Grafana variable outside brackets, e.g. `topk($n, ...)`.
                i += 1;
                while i < chars.len() && (is_ident(chars[i]) || chars[i] == '{' || chars[i] == '}')
                {
                    i += 1;
                }
                out.push(Tok::Other);
            }
            _ if c.is_ascii_digit() || c == '.' => {
                // Numbers and durations: 0.99, 1e-3, 0x1f, 5m.
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                out.push(Tok::Other);
            }
            _ => {
                out.push(Tok::Other);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Reads the label list of `by (...)` & co. starting at the `(`.
fn label_list(toks: &[Tok], mut i: usize) -> Result<(Vec<String>, usize), String> {
    if toks.get(i) != Some(&Tok::LParen) {
        return Err("expected ( after by/without/on/ignoring".into());
    }
    i += 1;
    let mut labels = Vec::new();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(l)) => labels.push(l.clone()),
            Some(Tok::Other) => {} // the commas
            Some(Tok::RParen) => return Ok((labels, i + 1)),
            t => return Err(format!("unexpected {t:?} in a label list")),
        }
        i += 1;
    }
}

fn is_kw(name: &str, set: &[&str]) -> bool {
    set.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// Reads tokens from `i` up to the closing `)` (when `nested`) or the end,
/// recording into `refs`; returns the metric names selected in that span
/// and the index after it.
fn span(
    toks: &[Tok],
    mut i: usize,
    nested: bool,
    refs: &mut Refs,
) -> Result<(Vec<String>, usize), String> {
    let mut metrics = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            Tok::RParen if nested => return Ok((metrics, i + 1)),
            Tok::RParen => return Err("unbalanced )".into()),
            Tok::LParen => {
                let (m, next) = span(toks, i + 1, true, refs)?;
                metrics.extend(m);
                i = next;
            }
            Tok::Braces(matchers) => {
                // A selector without a metric name: {__name__="..."}.
                let name = matchers
                    .iter()
                    .find_map(|(l, v)| (l == "__name__").then(|| v.clone()).flatten())
                    .ok_or("a selector needs a metric name (or __name__=\"...\")")?;
                let labels = matchers
                    .iter()
                    .map(|(l, _)| l.clone())
                    .filter(|l| l != "__name__")
                    .collect();
                refs.selectors.push((name.clone(), labels));
                metrics.push(name);
                i += 1;
            }
            Tok::Ident(name) if is_kw(name, &["by", "without"]) => {
                return Err(format!("{name} outside an aggregation"));
            }
            Tok::Ident(name) if is_kw(name, &["on", "ignoring", "group_left", "group_right"]) => {
                if toks.get(i + 1) == Some(&Tok::LParen) {
                    let (labels, next) = label_list(toks, i + 1)?;
                    refs.matching.extend(labels);
                    i = next;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(name) if is_kw(name, KEYWORDS) => i += 1,
            Tok::Ident(name) if is_kw(name, AGGREGATORS) => {
                let mut labels = Vec::new();
                let mut j = i + 1;
                if let Some(Tok::Ident(k)) = toks.get(j)
                    && is_kw(k, &["by", "without"])
                {
                    let (l, next) = label_list(toks, j + 1)?;
                    labels = l;
                    j = next;
                }
                if toks.get(j) != Some(&Tok::LParen) {
                    return Err(format!("{name}: expected (arguments)"));
                }
                let (inner, mut next) = span(toks, j + 1, true, refs)?;
                if let Some(Tok::Ident(k)) = toks.get(next)
                    && is_kw(k, &["by", "without"])
                {
                    let (l, after) = label_list(toks, next + 1)?;
                    labels.extend(l);
                    next = after;
                }
                if !labels.is_empty() {
                    refs.groupings.push((labels, inner.clone()));
                }
                metrics.extend(inner);
                i = next;
            }
            Tok::Ident(name) => {
                match toks.get(i + 1) {
                    // A function call: its arguments are read as a group.
                    Some(Tok::LParen) => i += 1,
                    Some(Tok::Braces(matchers)) => {
                        let labels = matchers
                            .iter()
                            .map(|(l, _)| l.clone())
                            .filter(|l| l != "__name__")
                            .collect();
                        refs.selectors.push((name.clone(), labels));
                        metrics.push(name.clone());
                        i += 2;
                    }
                    _ => {
                        refs.selectors.push((name.clone(), Vec::new()));
                        metrics.push(name.clone());
                        i += 1;
                    }
                }
            }
            Tok::Other => i += 1,
        }
    }
    if nested {
        return Err("unbalanced (".into());
    }
    Ok((metrics, i))
}

/// What `expr` refers to, or why it could not be read.
pub fn refs(expr: &str) -> Result<Refs, String> {
    let toks = tokens(expr)?;
    let mut refs = Refs::default();
    span(&toks, 0, false, &mut refs)?;
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn finds_metrics_matchers_and_groupings() {
        let r = refs(
            r#"histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{command!~"IDLE|DATA", x="}"}[$__rate_interval])))
               / on (service) group_left sum(rate(b_total[5m] offset 1h)) without (pod) > 1e-3"#,
        )
        .unwrap();
        assert_eq!(
            r.selectors,
            vec![
                ("a_bucket".into(), s(&["command", "x"])),
                ("b_total".into(), vec![])
            ]
        );
        assert_eq!(
            r.groupings,
            vec![
                (s(&["service", "le"]), s(&["a_bucket"])),
                (s(&["pod"]), s(&["b_total"]))
            ]
        );
        assert_eq!(r.matching, s(&["service"]));
    }

    #[test]
    fn keywords_functions_and_numbers_are_not_metrics() {
        let r = refs(
            "up{job=\"x\"} == 0 and absent(m:rec{state='used'}) or vector(1) unless Inf > bool NaN",
        )
        .unwrap();
        assert_eq!(r.metrics().collect::<Vec<_>>(), ["up", "m:rec"]);
        let r = refs("SUM BY (a) (x)").unwrap();
        assert_eq!(r.groupings, vec![(s(&["a"]), s(&["x"]))]);
        let r = refs("{__name__=\"x\", a=~\"b\"}").unwrap();
        assert_eq!(r.selectors, vec![("x".into(), s(&["a"]))]);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(refs("sum(x").is_err());
        assert!(refs("x{a=b}").is_err());
        assert!(refs("x{a=\"b\"").is_err());
        assert!(refs("{a=\"b\"}").is_err());
        assert!(refs("x by (a)").is_err());
    }
}
