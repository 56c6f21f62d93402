//! What the full-text index can rule out for a SEARCH key (issue 27).
//!
//! The index holds, per body, [`mail_summary::search_text::index_text`]:
//! everything BODY, TEXT and HEADER match, folded. A message the evaluator
//! ([`crate::search`]) finds for `BODY s` or `TEXT s` contains `fold(s)`
//! there; for `HEADER name value` it contains the field marker, the folded
//! name and `:`, and `fold(value)`. [`narrow`] turns a key tree into a
//! condition on the index text that every match satisfies: the store
//! reads only the messages whose bodies satisfy it (or are not indexed
//! yet), and the evaluator decides among those, so answers are the
//! evaluator's own.
//!
//! A search string narrows only when its folded form has a run of at
//! least three letters or digits (what a trigram index can use); shorter
//! ones leave the search to the evaluator within the other criteria. NOT
//! narrows nothing, and an OR only when each of its branches does.

use mail_summary::search_text::{FIELD_MARK, fold};
use mailbox_api::pb;
use mailbox_api::pb::search_key::Key;

use crate::search::MAX_DEPTH;

/// The header fields whose non-empty HEADER searches the evaluator
/// answers from the decoded summary (their values in the index text
/// follow the field's marker like any other field).
const SUMMARY_HEADERS: [&str; 6] = ["from", "to", "cc", "bcc", "subject", "message-id"];

/// A condition on a body's index text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// The text contains this (folded) string.
    Has(String),
    /// Every condition holds.
    All(Vec<Cond>),
    /// At least one holds.
    Any(Vec<Cond>),
}

/// A condition as the word index narrows it ([`Cond::to_words_sql`]): the
/// texts satisfying `in_words` or `in_long` (each a condition on
/// `blob_text`) are every text satisfying the condition. Two conditions,
/// each for a statement of its own (their union): written as one, with
/// ORs inside, the planner took one term into the index scan and tested
/// the rest on every row it found, reading each row's word list (89 ms
/// for a phrase of three common words over 36,000 texts, 1 ms apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordsSql {
    /// Every string found through the word list alone (word index
    /// scans only); `None`: no text is (a string only a long word holds).
    pub in_words: Option<String>,
    /// A long word holds some string (the first condition: trigram
    /// index scans of the long words), and each string is in the word
    /// list or the long words (the second, tested on those few texts);
    /// `None`: no string can be in a long word.
    pub in_long: Option<(String, String)>,
    /// What they select needs no re-check with LIKE: every string is one
    /// run of letters and digits, which the words hold exactly.
    pub exact: bool,
    /// Every string of more than one run narrows by at least one word
    /// pair ([`phrase_pairs`]): only texts where two of its runs stand
    /// next to each other are candidates.
    pub paired: bool,
}

impl WordsSql {
    /// The statement of the texts `t` (`blob_text`) satisfying `base` and
    /// either condition: a union of one statement each.
    /// The long words' statement is fenced (`OFFSET 0`): the planner
    /// cannot take a common word of the second condition into its index
    /// scan (with a generic plan it knows neither's selectivity).
    pub fn texts_sql(&self, base: &str) -> String {
        let mut arms = Vec::new();
        if let Some(w) = &self.in_words {
            arms.push(format!(
                "SELECT t.blob_id FROM blob_text t WHERE {base} AND {w}"
            ));
        }
        if let Some((longs, full)) = &self.in_long {
            arms.push(format!(
                "SELECT t.blob_id FROM (SELECT t.blob_id, t.words, t.long_words \
                   FROM blob_text t WHERE {base} AND {longs} OFFSET 0) t WHERE {full}"
            ));
        }
        if arms.is_empty() {
            return "SELECT t.blob_id FROM blob_text t WHERE FALSE".into();
        }
        arms.join(" UNION ")
    }
}

/// A node of [`Cond::to_words_sql`]: the condition through the word list
/// alone (`None`: false), through either, and the long words' patterns.
struct WordsNode {
    words: Option<String>,
    full: String,
    longs: Vec<String>,
}

impl Cond {
    /// The strings the condition looks for, in order (one bound
    /// parameter each on PostgreSQL).
    pub fn strings(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Cond::Has(s) => out.push(s),
            Cond::All(l) | Cond::Any(l) => l.iter().for_each(|c| c.collect(out)),
        }
    }

    /// PostgreSQL: the condition over `column`, a text stored without
    /// [`JOINED_OUT`] (`blob_text.joined`, as the trigram index holds it,
    /// migration 0029), with `LIKE`: the form the index serves, and a
    /// re-check of its candidates that reads each text once. Its strings
    /// are bound from `$first` on in [`Cond::strings`] order, each as
    /// [`like_pattern`].
    pub fn to_stored_like_sql(&self, column: &str, first: usize) -> String {
        let mut n = first;
        self.like_sql(
            column,
            &mut |c: &str, n: usize| format!("{c} LIKE ${n}"),
            &mut n,
        )
    }

    fn like_sql(
        &self,
        column: &str,
        one: &mut dyn FnMut(&str, usize) -> String,
        n: &mut usize,
    ) -> String {
        match self {
            Cond::Has(_) => {
                let s = one(column, *n);
                *n += 1;
                s
            }
            Cond::All(l) => join(l.iter().map(|c| c.like_sql(column, one, n)), " AND "),
            Cond::Any(l) => join(l.iter().map(|c| c.like_sql(column, one, n)), " OR "),
        }
    }

    /// PostgreSQL: the condition over a text read row by row (no trigram
    /// index: a small mailbox's texts, or texts not in the index yet),
    /// whatever its form: `joined` (the column saying it is stored without
    /// [`JOINED_OUT`]) picks `strpos` on it as it is, else `LIKE` on
    /// [`joined_sql`] of it (a text an older version wrote with its white
    /// space, migration 0027). The strings are bound twice, in
    /// [`Cond::strings`] order: from `$first_str` on as [`joined`], from
    /// `$first_like` on as [`like_pattern`].
    pub fn to_read_sql(
        &self,
        text: &str,
        joined_col: &str,
        first_str: usize,
        first_like: usize,
    ) -> String {
        let mut n = first_str;
        let offset = first_like - first_str;
        self.like_sql(
            text,
            &mut |c: &str, n: usize| {
                format!(
                    "(CASE WHEN {joined_col} THEN strpos({c}, ${n}) > 0 ELSE {} LIKE ${} END)",
                    joined_sql(c),
                    n + offset
                )
            },
            &mut n,
        )
    }

    /// PostgreSQL: the condition as the word index can narrow it
    /// (migration 0034: `words` is a text's [`index_words`] as an array,
    /// under a GIN index, `fts_words` their vocabulary and `long` the
    /// long words, each under a trigram index), its strings pushed on
    /// `binds` and bound from `$first` on. `None` when it narrows nothing
    /// (a string with no term worth looking up, as in `narrow`).
    pub fn to_words_sql(
        &self,
        cols: (&str, &str),
        first: usize,
        binds: &mut Vec<String>,
    ) -> Option<WordsSql> {
        let mut exact = true;
        let mut paired = true;
        let n = self.words_sql(cols, first, binds, &mut exact, &mut paired)?;
        let in_long = (!n.longs.is_empty()).then(|| (join(n.longs.into_iter(), " OR "), n.full));
        Some(WordsSql {
            in_words: n.words,
            in_long,
            exact,
            paired,
        })
    }

    fn words_sql(
        &self,
        cols: (&str, &str),
        first: usize,
        binds: &mut Vec<String>,
        exact: &mut bool,
        paired: &mut bool,
    ) -> Option<WordsNode> {
        let (words, long) = cols;
        match self {
            Cond::Has(s) => {
                let terms = terms(s);
                if terms.is_empty() {
                    return None;
                }
                *exact &= single_run(s);
                // Each term as the word list holds it and as the long
                // words do (a whole word is never long, a long run never a
                // word).
                let mut each = Vec::new();
                // The runs next to each other in `s`, next to each other in
                // the text: a word pair each, whole in the words (as a
                // whole word is; long runs are in pairs too).
                let pairs = phrase_pairs(s);
                *paired &= single_run(s) || !pairs.is_empty();
                for p in pairs {
                    let n = first + binds.len();
                    binds.push(p);
                    each.push((Some(format!("{words} @> ARRAY[CAST(${n} AS TEXT)]")), None));
                }
                for t in terms {
                    let n = first + binds.len();
                    each.push(match t {
                        Term::Word(w) => {
                            binds.push(w);
                            (Some(format!("{words} @> ARRAY[CAST(${n} AS TEXT)]")), None)
                        }
                        Term::Part { vocab, long: l } => {
                            binds.push(vocab);
                            binds.push(l);
                            (
                                Some(format!(
                                    "{words} && ARRAY(SELECT v.word FROM fts_words v \
                                       WHERE v.word LIKE ${n} AND fts_index_first(v.word))"
                                )),
                                Some(format!("{long} LIKE ${}", n + 1)),
                            )
                        }
                        Term::Long(l) => {
                            binds.push(l);
                            (None, Some(format!("{long} LIKE ${n}")))
                        }
                    });
                }
                let in_words: Option<Vec<&String>> = each.iter().map(|(w, _)| w.as_ref()).collect();
                let in_words = in_words.map(|w| join(w.into_iter().cloned(), " AND "));
                let full = join(
                    each.iter().map(|(w, l)| match (w, l) {
                        (Some(w), Some(l)) => format!("({w} OR {l})"),
                        (Some(x), None) | (None, Some(x)) => x.clone(),
                        (None, None) => "FALSE".to_string(),
                    }),
                    " AND ",
                );
                Some(WordsNode {
                    words: in_words,
                    full,
                    longs: each.into_iter().filter_map(|(_, l)| l).collect(),
                })
            }
            Cond::All(l) => {
                let mut parts = Vec::new();
                for c in l {
                    match c.words_sql(cols, first, binds, exact, paired) {
                        Some(p) => parts.push(p),
                        None => *exact = false,
                    }
                }
                if parts.is_empty() {
                    return None;
                }
                let words: Option<Vec<String>> = parts.iter().map(|p| p.words.clone()).collect();
                Some(WordsNode {
                    words: words.map(|w| join(w.into_iter(), " AND ")),
                    full: join(parts.iter().map(|p| p.full.clone()), " AND "),
                    longs: parts.into_iter().flat_map(|p| p.longs).collect(),
                })
            }
            Cond::Any(l) => {
                // Every branch narrows, or none of their strings is bound.
                let before = binds.len();
                let mut parts = Vec::new();
                for c in l {
                    match c.words_sql(cols, first, binds, exact, paired) {
                        Some(p) => parts.push(p),
                        None => {
                            binds.truncate(before);
                            return None;
                        }
                    }
                }
                let words: Vec<String> = parts.iter().filter_map(|p| p.words.clone()).collect();
                Some(WordsNode {
                    words: (!words.is_empty()).then(|| join(words.into_iter(), " OR ")),
                    full: join(parts.iter().map(|p| p.full.clone()), " OR "),
                    longs: parts.into_iter().flat_map(|p| p.longs).collect(),
                })
            }
        }
    }

    /// SQLite: the condition as an FTS5 query of phrases (with the trigram
    /// tokenizer a phrase matches where its text occurs).
    pub fn to_fts5_query(&self) -> String {
        match self {
            Cond::Has(s) => format!("\"{}\"", s.replace('"', "\"\"")),
            Cond::All(l) => join(l.iter().map(Cond::to_fts5_query), " AND "),
            Cond::Any(l) => join(l.iter().map(Cond::to_fts5_query), " OR "),
        }
    }
}

fn join(parts: impl Iterator<Item = String>, sep: &str) -> String {
    format!("({})", parts.collect::<Vec<_>>().join(sep))
}

/// The white space the trigram index leaves out of the texts it holds
/// (PostgreSQL, migration 0022), and out of the strings looked up.
///
/// pg_trgm takes trigrams within words only (it splits at anything not a
/// letter or digit), so in the plain text a phrase of common words, such
/// as "project status meeting", narrows no better than its rarest word:
/// every text with the three words is a candidate (191 of 10,000
/// realistic messages for 50 matches, bench/fts-corpus.py). Without the
/// spaces, "projectstatusmeeting" has trigrams across the words ("cts",
/// "tst", "usm", "sme"), which few texts hold (53 candidates). Removing
/// characters loses no match: if `s` occurs in `t`, `s` without them
/// occurs in `t` without them (a line break inside the string as well);
/// the index only narrows, the evaluator decides.
pub const JOINED_OUT: [char; 4] = [' ', '\n', '\r', '\t'];

/// PostgreSQL: `column` without [`JOINED_OUT`], exactly the expression of
/// the trigram index (migration 0022), so that the planner uses it. Plain
/// `replace` (one pass each, a few microseconds per text): `translate`
/// is about as narrow but ten times slower to re-check.
pub fn joined_sql(column: &str) -> String {
    format!(
        "replace(replace(replace(replace({column}, ' ', ''), E'\\n', ''), E'\\r', ''), E'\\t', '')"
    )
}

/// `s` without [`JOINED_OUT`]: how the texts are stored on PostgreSQL
/// (`blob_text.joined`), and the string `strpos` looks for in them.
pub fn joined(s: &str) -> String {
    s.chars().filter(|c| !JOINED_OUT.contains(c)).collect()
}

/// `%s%` with [`JOINED_OUT`] removed from `s` and LIKE's `%`, `_` and `\`
/// escaped (PostgreSQL's default escape character is `\`): the pattern
/// for [`joined_sql`].
pub fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars().filter(|c| !JOINED_OUT.contains(c)) {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Words longer than this many characters are kept apart from a text's
/// word list ([`index_words`]): the vocabulary's keys stay small
/// (PostgreSQL, `fts_words`), and such runs of letters are mostly encoded
/// data (DKIM and ARC signatures, tokens in URLs), which would fill the
/// vocabulary with words never searched for, or scripts written without
/// spaces.
pub const MAX_WORD: usize = 64;

/// The words of an index text (PostgreSQL, `blob_text.words` and
/// `long_words`, migration 0034): its maximal runs of letters and digits
/// (`char::is_alphanumeric`; the text is folded already), distinct and
/// sorted. The first string holds those of at most [`MAX_WORD`]
/// characters separated by one space; the second those longer, each
/// between spaces (`" w1 w2 "`, so that LIKE can tell a long word's
/// start and end), or is empty. The word index narrows a search by them
/// ([`Cond::to_words_sql`]): a string that occurs in the text has each of
/// its own runs of letters and digits in one of these words, whole when
/// white space or punctuation borders it in the string, at the word's
/// start or end when only one side is bordered, anywhere in it otherwise.
///
/// After the words (migration 0038) come the text's word pairs: each run
/// next to the one after it, as [`pair`]'s keys (long runs too; none for
/// a run shorter than [`PAIR_KEEP`]), distinct and sorted, and last
/// [`PAIRED`]. A phrase
/// narrows by them ([`phrase_pairs`]): the words "project status
/// meeting" are in 1,799 of bench/fts's 120,000 texts, next to each
/// other in far fewer.
pub fn index_words(text: &str) -> (String, String) {
    let runs: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut pairs: Vec<String> = runs.windows(2).filter_map(|w| pair(w[0], w[1])).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (mut long, mut words): (Vec<&str>, Vec<&str>) = runs
        .into_iter()
        .partition(|w| w.len() > MAX_WORD && w.chars().count() > MAX_WORD);
    for list in [&mut words, &mut long] {
        list.sort_unstable();
        list.dedup();
    }
    words.extend(pairs.iter().map(String::as_str));
    words.push(PAIRED);
    let words = words.join(" ");
    let long = if long.is_empty() {
        String::new()
    } else {
        format!(" {} ", long.join(" "))
    };
    (words, long)
}

/// Opens a word pair's key in a text's words ([`pair`]): not a letter or
/// digit, so no word holds it, and the vocabulary (`fts_words`) leaves
/// such entries out.
pub const PAIR_MARK: char = '|';

/// Ends every text's words written with their pairs: migration 0038's
/// trigger clears `blob_text.paired` when words are written without it
/// (by a version before word pairs, e.g. its indexer rewriting a text
/// during a rolling update), so that such a text leaves the word index
/// instead of being missed by a phrase.
pub const PAIRED: &str = "|";

/// Characters of each run a word pair keeps: the end of the first, the
/// start of the second. Runs shorter than this make no pair: words of
/// one or two letters ("of", "to", "a") are the commonest, and their
/// pairs were two in five of a text's (bench/fts's texts: 764 pairs
/// each, 467 of runs of three or more), each an entry of the GIN index
/// to write; a phrase of short words narrows by its words alone.
const PAIR_KEEP: usize = 3;

/// How many keys word pairs are spread over ([`pair`]). Unhashed, the
/// pairs were millions of distinct keys, most in a text or two (the
/// words' GIN index grew to 431 MB over bench/fts's 120,000 texts, and
/// writing it held the trigram indexer to some 74 texts a second).
/// Hashed, a text holds some 470 of the 65,536 keys (0.7%): a key of a
/// phrase's pair is in about one text in 140 that lacks the pair, and a
/// candidate needs the phrase's words and every one of its pairs' keys.
const PAIR_KEYS: u64 = 1 << 16;

/// The word pair of run `a` followed by run `b` in a text, as its key:
/// [`PAIR_MARK`] and, in hexadecimal, a hash of the last [`PAIR_KEEP`]
/// characters of `a` with the first [`PAIR_KEEP`] of `b`, one of
/// [`PAIR_KEYS`]; `None` when either run is shorter. A function of the
/// two runs' ends only, so a search string's runs that end a word of the
/// text (or start one) give the text's own key. Stored in every text's
/// words: the hash (FNV-1a, 64 bits) must never change without
/// computing every text's words again (nor may where runs split:
/// `char::is_alphanumeric` and the folding of [`index_words`]' text, as
/// for the words themselves).
fn pair(a: &str, b: &str) -> Option<String> {
    let end = a.char_indices().rev().nth(PAIR_KEEP - 1)?.0;
    let start = b.char_indices().nth(PAIR_KEEP - 1)?;
    let start = start.0 + start.1.len_utf8();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // 0xff is in no UTF-8 text: the two ends cannot run together.
    for &byte in a.as_bytes()[end..]
        .iter()
        .chain(&[0xff])
        .chain(&b.as_bytes()[..start])
    {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some(format!("{PAIR_MARK}{:x}", h % PAIR_KEYS))
}

/// Most word pairs a search string is narrowed by.
const MAX_PAIRS: usize = 6;

/// The word pairs ([`pair`]) every text holding the folded string `s`
/// holds: a text holding `s` holds each two runs of letters and digits
/// next to each other in `s` as two runs next to each other (what lies
/// between them in `s` is neither letter nor digit, and lies between
/// them in the text), the first ending with the first run, the second
/// starting with the second (equal to them, but for a run opening or
/// ending `s`, which may be part of a longer word): with both runs of
/// at least [`PAIR_KEEP`] characters, the text's pair is theirs. At most
/// [`MAX_PAIRS`], distinct.
fn phrase_pairs(s: &str) -> Vec<String> {
    let runs: Vec<&str> = s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    // The first MAX_PAIRS distinct: a search string may be long, so stop
    // there (each one is compared with those kept).
    let mut out: Vec<String> = Vec::new();
    for p in runs.windows(2).filter_map(|w| pair(w[0], w[1])) {
        if out.len() == MAX_PAIRS {
            break;
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// How a run of letters and digits of a search string must stand in a
/// word of the text (see [`index_words`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// The whole word (bordered on both sides in the string; no longer
    /// than [`MAX_WORD`], so not a long word).
    Word(String),
    /// Part of a word (bordered on one side or none): `vocab` the
    /// vocabulary's LIKE pattern for it (the word's start `r%`, its end
    /// `%r`, anywhere `%r%`), `long` the long words' (` r%`, `%r `,
    /// `%r%`).
    Part { vocab: String, long: String },
    /// Longer than [`MAX_WORD`]: only a long word holds it (the long
    /// words' LIKE pattern).
    Long(String),
}

/// The terms of one folded search string, those worth looking up first
/// (a run longer than a word, then a whole word of at least three
/// letters, then the longest parts of at least three, then shorter whole
/// words), at most three; empty when none narrows.
fn terms(s: &str) -> Vec<Term> {
    let chars: Vec<char> = s.chars().collect();
    let mut found: Vec<(u8, usize, Term)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        // Letters and digits only: nothing for LIKE to escape.
        let run: String = chars[start..i].iter().collect();
        let n = i - start;
        let (open_start, open_end) = (start == 0, i == chars.len());
        let (head, tail) = (
            if open_start { "%" } else { "% " },
            if open_end { "%" } else { " %" },
        );
        let term = if n > MAX_WORD {
            (0, n, Term::Long(format!("{head}{run}{tail}")))
        } else if !open_start && !open_end {
            (if n >= 3 { 1 } else { 3 }, n, Term::Word(run))
        } else if n >= 3 {
            let vocab = format!(
                "{}{run}{}",
                if open_start { "%" } else { "" },
                if open_end { "%" } else { "" }
            );
            let long = format!("{head}{run}{tail}");
            (2, n, Term::Part { vocab, long })
        } else {
            continue;
        };
        found.push(term);
    }
    // Most selective first: long runs, whole words, then longer parts; a
    // whole word of one or two letters (a long list of texts) only when
    // nothing else narrows.
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    found.dedup_by(|a, b| a.2 == b.2);
    if found.first().is_some_and(|f| f.0 < 3) {
        found.retain(|f| f.0 < 3);
    }
    found.into_iter().take(3).map(|(_, _, t)| t).collect()
}

/// Whether a folded search string is one run of letters and digits,
/// which a word holds anywhere: the word index's candidates for it are
/// exactly the texts holding it, with nothing to re-check.
fn single_run(s: &str) -> bool {
    !s.is_empty() && s.chars().all(char::is_alphanumeric)
}

/// Whether a folded string is worth looking up: a run of three letters
/// or digits gives the trigram index something to hold on to.
fn usable(folded: &str) -> bool {
    let mut run = 0;
    for c in folded.chars() {
        run = if c.is_alphanumeric() { run + 1 } else { 0 };
        if run >= 3 {
            return true;
        }
    }
    false
}

fn has(s: &str) -> Option<Cond> {
    let f = fold(s);
    usable(&f).then_some(Cond::Has(f))
}

/// The condition every message matching `key` satisfies in the index, or
/// `None` when the index rules nothing out.
pub fn narrow(key: &pb::SearchKey) -> Option<Cond> {
    walk(key, 0)
}

fn walk(key: &pb::SearchKey, depth: usize) -> Option<Cond> {
    if depth > MAX_DEPTH {
        return None;
    }
    match &key.key {
        Some(Key::Body(s)) | Some(Key::Text(s)) => has(s),
        Some(Key::Header(h)) => header(&h.name, &h.value),
        Some(Key::And(l)) => {
            let mut all: Vec<Cond> = l.keys.iter().filter_map(|k| walk(k, depth + 1)).collect();
            match all.len() {
                0 => None,
                1 => all.pop(),
                _ => Some(Cond::All(all)),
            }
        }
        Some(Key::Or(l)) => {
            let any: Option<Vec<Cond>> = l.keys.iter().map(|k| walk(k, depth + 1)).collect();
            match any {
                Some(mut v) if v.len() == 1 => v.pop(),
                Some(v) if !v.is_empty() => Some(Cond::Any(v)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// HEADER name value: the evaluator compares the field names ASCII case
/// insensitively (trimmed) and looks for `value` in the field's unfolded
/// value, or, for the summary's six fields and a non-empty value, in the
/// decoded value; the index text has `MARK name ":" value` for both.
fn header(name: &str, value: &str) -> Option<Cond> {
    let lname = name.to_ascii_lowercase();
    let marker = if SUMMARY_HEADERS.contains(&lname.as_str()) && !value.is_empty() {
        format!("{FIELD_MARK}{lname}:")
    } else {
        format!("{FIELD_MARK}{}:", fold(&lname))
    };
    let mut all: Vec<Cond> = [usable(&marker).then_some(Cond::Has(marker)), has(value)]
        .into_iter()
        .flatten()
        .collect();
    match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Cond::All(all)),
    }
}

/// The index text of a stored body from its bytes and its stored
/// (protobuf) summary, whose decoded header values the evaluator uses;
/// from a fresh summary if that one cannot be read.
pub fn stored_index_text(data: &[u8], summary: &[u8]) -> String {
    use prost::Message as _;
    let fields = pb::MessageSummary::decode(summary)
        .ok()
        .and_then(|s| s.search)
        .map(|f| mail_summary::SearchFields {
            from: f.from,
            to: f.to,
            cc: f.cc,
            bcc: f.bcc,
            subject: f.subject,
            message_id: f.message_id,
            sent_date: f.sent_date,
            sent_tz_minutes: f.sent_tz_minutes,
        })
        .unwrap_or_else(|| mail_summary::summarize(data).search);
    mail_summary::search_text::index_text(data, &fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pb::search_key::Key as K;

    fn k(key: K) -> pb::SearchKey {
        pb::SearchKey { key: Some(key) }
    }

    fn body(s: &str) -> pb::SearchKey {
        k(K::Body(s.into()))
    }

    #[test]
    fn short_strings_and_negations_narrow_nothing() {
        assert_eq!(narrow(&body("ab")), None);
        assert_eq!(narrow(&body("a b c")), None);
        assert_eq!(narrow(&k(K::Not(Box::new(body("hello"))))), None);
        assert_eq!(narrow(&body("ÉTÉ")), Some(Cond::Has("été".into())));
    }

    #[test]
    fn and_keeps_what_narrows_or_needs_every_branch() {
        let and = k(K::And(pb::SearchKeyList {
            keys: vec![body("hello"), body("x"), k(K::Larger(10))],
        }));
        assert_eq!(narrow(&and), Some(Cond::Has("hello".into())));
        let or = k(K::Or(pb::SearchKeyList {
            keys: vec![body("hello"), body("x")],
        }));
        assert_eq!(narrow(&or), None);
        let or = k(K::Or(pb::SearchKeyList {
            keys: vec![body("hello"), body("World")],
        }));
        let c = narrow(&or).unwrap();
        let j = joined_sql("t");
        assert_eq!(c.to_stored_like_sql("t", 5), "(t LIKE $5 OR t LIKE $6)");
        assert_eq!(
            c.to_read_sql("t", "x.joined", 2, 4),
            format!(
                "((CASE WHEN x.joined THEN strpos(t, $2) > 0 ELSE {j} LIKE $4 END) OR \
                 (CASE WHEN x.joined THEN strpos(t, $3) > 0 ELSE {j} LIKE $5 END))"
            )
        );
        assert_eq!(c.to_fts5_query(), "(\"hello\" OR \"world\")");
        assert_eq!(c.strings(), ["hello", "world"]);
    }

    #[test]
    fn header_keys_look_for_the_field() {
        let h = k(K::Header(pb::HeaderMatch {
            name: "X-Spam".into(),
            value: String::new(),
        }));
        assert_eq!(narrow(&h), Some(Cond::Has("\u{1}x-spam:".into())));
        let h = k(K::Header(pb::HeaderMatch {
            name: "Subject".into(),
            value: "Re".into(),
        }));
        assert_eq!(narrow(&h), Some(Cond::Has("\u{1}subject:".into())));
    }

    #[test]
    fn a_text_has_its_distinct_words_sorted() {
        assert_eq!(
            index_words("b a\u{1}x-spam: b,a\nköln"),
            ("a b köln spam x |".into(), String::new())
        );
        assert_eq!(index_words(""), ("|".into(), String::new()));
        let long = "x".repeat(MAX_WORD + 1);
        assert_eq!(
            index_words(&format!("{long} y b={long}")),
            ("b y |".into(), format!(" {long} "))
        );
        // Word pairs after the words, of runs of three or more.
        let (words, longs) =
            index_words(&format!("project status, status\r\nmeeting of {long}-yes"));
        assert_eq!(longs, format!(" {long} "));
        let mut pairs = [
            pair("project", "status"),
            pair("status", "status"),
            pair("status", "meeting"),
            pair(&long, "yes"),
        ]
        .map(Option::unwrap)
        .to_vec();
        pairs.sort();
        assert_eq!(
            words,
            format!("meeting of project status yes {} |", pairs.join(" "))
        );
        assert_eq!(
            index_words(&"é".repeat(MAX_WORD)).0,
            format!("{} |", "é".repeat(MAX_WORD))
        );
    }

    #[test]
    fn a_phrase_has_the_pairs_it_fixes() {
        let p = |a: &str, b: &str| pair(a, b).unwrap();
        // The key is stored: a new hash needs every text's words again.
        assert_eq!(p("project", "status"), "|1f7a");
        assert_eq!(p("subject", "stay"), p("project", "status"));
        assert_ne!(p("project", "status"), p("status", "meeting"));
        assert_eq!(pair("of", "status"), None);
        assert_eq!(
            phrase_pairs("project status meeting"),
            [p("project", "status"), p("status", "meeting")]
        );
        // A run opening or ending the string shorter than what a pair
        // keeps: the text's word may be longer on that side.
        assert_eq!(phrase_pairs("ct status me"), Vec::<String>::new());
        assert_eq!(phrase_pairs("ct status meeting"), [p("status", "mee")]);
        // Short words make no pairs.
        assert_eq!(phrase_pairs(" to be "), Vec::<String>::new());
        assert_eq!(phrase_pairs("status of the project"), [p("the", "pro")]);
        assert_eq!(phrase_pairs("köln–grüße"), [p("köln", "grü")]);
        assert_eq!(phrase_pairs("aaa aaa aaa aaa aaa").len(), 1);
        assert_eq!(
            phrase_pairs("ab1 bc2 cd3 de4 ef5 fg6 gh7 hi8 ij9").len(),
            MAX_PAIRS
        );
        assert_eq!(phrase_pairs("köln"), Vec::<String>::new());
    }

    /// Every pair a string narrows by is among the pairs of every text
    /// holding it: substrings of pseudo-random texts over a small
    /// alphabet (short runs, long runs, several kinds of separators,
    /// characters of more than one byte), at every start and length.
    #[test]
    fn every_text_holding_a_phrase_has_its_pairs() {
        let alphabet: Vec<char> = "abab\u{e9}\u{e9}1 -\n\u{a0}".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut checked = 0;
        for round in 0..300 {
            let len = 5 + (next() % 60) as usize;
            let mut text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if round % 10 == 0 {
                text.push_str(&"b".repeat(MAX_WORD + 2));
                text.push_str(" ab");
            }
            let (words, _) = index_words(&text);
            let held: Vec<&str> = words.split(' ').collect();
            let chars: Vec<char> = text.chars().collect();
            for from in 0..chars.len() {
                for to in from + 1..=chars.len() {
                    let s: String = chars[from..to].iter().collect();
                    for p in phrase_pairs(&s) {
                        assert!(held.contains(&p.as_str()), "{p:?} of {s:?} in {text:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked} pairs checked");
    }

    fn part(vocab: &str, long: &str) -> Term {
        Term::Part {
            vocab: vocab.into(),
            long: long.into(),
        }
    }

    #[test]
    fn runs_become_whole_words_or_parts() {
        // Bordered on both sides: the whole word; on one side: its start
        // or end; on neither: anywhere in it.
        assert_eq!(terms("köln"), [part("%köln%", "%köln%")]);
        assert_eq!(
            terms("project status meeting"),
            [
                Term::Word("status".into()),
                part("%project", "%project %"),
                part("meeting%", "% meeting%")
            ]
        );
        assert_eq!(terms(".pdf"), [part("pdf%", "% pdf%")]);
        // A short whole word only when nothing better narrows.
        assert_eq!(terms("\u{1}x-spam:"), [Term::Word("spam".into())]);
        assert_eq!(terms("-x-"), [Term::Word("x".into())]);
        assert_eq!(terms("ab cd"), Vec::<Term>::new());
        assert_eq!(terms("50%_a"), Vec::<Term>::new());
        assert_eq!(terms("-50%_a"), [Term::Word("50".into())]);
        // Longer than a word: only a long word holds it.
        let y = "y".repeat(MAX_WORD + 1);
        assert_eq!(terms(&y), [Term::Long(format!("%{y}%"))]);
        assert_eq!(terms(&format!("={y};")), [Term::Long(format!("% {y} %"))]);
        assert_eq!(terms("one two three four five").len(), 3);
    }

    #[test]
    fn conditions_become_word_lookups() {
        let cols = ("w", "l");
        let vocab = |n| {
            format!(
                "w && ARRAY(SELECT v.word FROM fts_words v WHERE v.word LIKE ${n} AND \
                 fts_index_first(v.word))"
            )
        };
        let mut binds = Vec::new();
        let c = Cond::All(vec![
            Cond::Has("hello".into()),
            Cond::Any(vec![Cond::Has("a b".into()), Cond::Has("world".into())]),
        ]);
        let w = c.to_words_sql(cols, 7, &mut binds).unwrap();
        // The OR with a branch that narrows nothing is left out (and its
        // strings unbound), so the rest needs a re-check.
        assert!(!w.exact);
        assert!(w.paired);
        assert_eq!(binds, ["%hello%", "%hello%"]);
        assert_eq!(w.in_words, Some(format!("(({}))", vocab(7))));
        assert_eq!(
            w.in_long,
            Some((
                "(l LIKE $8)".into(),
                format!("((({} OR l LIKE $8)))", vocab(7))
            ))
        );
        assert_eq!(
            w.texts_sql("B"),
            format!(
                "SELECT t.blob_id FROM blob_text t WHERE B AND {} UNION \
                 SELECT t.blob_id FROM (SELECT t.blob_id, t.words, t.long_words \
                 FROM blob_text t WHERE B AND (l LIKE $8) OFFSET 0) t WHERE ((({} OR l LIKE $8)))",
                w.in_words.as_ref().unwrap(),
                vocab(7)
            )
        );

        // Every term in the words, or one in the long words and each in
        // either.
        let mut binds = Vec::new();
        let w = Cond::Has("-word two".into())
            .to_words_sql(cols, 1, &mut binds)
            .unwrap();
        assert!(!w.exact);
        assert!(w.paired);
        // The pair of the two runs first, a whole word in the words.
        assert_eq!(
            binds,
            [
                pair("word", "two").unwrap(),
                "word".into(),
                "two%".into(),
                "% two%".into()
            ]
        );
        assert_eq!(
            w.in_words,
            Some(format!(
                "(w @> ARRAY[CAST($1 AS TEXT)] AND w @> ARRAY[CAST($2 AS TEXT)] AND {})",
                vocab(3)
            ))
        );
        assert_eq!(
            w.in_long,
            Some((
                "(l LIKE $4)".into(),
                format!(
                    "(w @> ARRAY[CAST($1 AS TEXT)] AND w @> ARRAY[CAST($2 AS TEXT)] \
                     AND ({} OR l LIKE $4))",
                    vocab(3)
                )
            ))
        );

        // Only a long word holds a long run; an OR keeps its branches.
        let y = "y".repeat(MAX_WORD + 1);
        let mut binds = Vec::new();
        let w = Cond::Any(vec![Cond::Has(y.clone()), Cond::Has("word".into())])
            .to_words_sql(cols, 1, &mut binds)
            .unwrap();
        assert!(w.exact);
        assert_eq!(binds, [format!("%{y}%"), "%word%".into(), "%word%".into()]);
        assert_eq!(w.in_words, Some(format!("(({}))", vocab(2))));
        assert_eq!(
            w.in_long,
            Some((
                "(l LIKE $1 OR l LIKE $3)".into(),
                format!("((l LIKE $1) OR (({} OR l LIKE $3)))", vocab(2))
            ))
        );
        assert_eq!(
            Cond::Has("ab".into()).to_words_sql(cols, 1, &mut binds),
            None
        );
        // A phrase whose runs make no pair narrows by its words alone.
        let w = Cond::Has("status of the".into())
            .to_words_sql(cols, 1, &mut Vec::new())
            .unwrap();
        assert!(!w.exact && !w.paired);
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
        assert_eq!(like_pattern("a b\r\nc\td, e"), "%abcd,e%");
        assert_eq!(joined("a b\r\nc\td, e"), "abcd,e");
        assert_eq!(
            Cond::Has("a\"b".into()).to_fts5_query(),
            "\"a\"\"b\"".to_string()
        );
    }
}
