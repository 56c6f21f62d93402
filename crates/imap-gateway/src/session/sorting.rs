//! SORT and UID SORT (RFC 5256 3), ESORT (RFC 5267 3), SORT=DISPLAY (RFC
//! 5957), THREAD and UID THREAD (RFC 5256 3). The store sorts and threads
//! over keys it keeps with each message; the session only turns UIDs into
//! message numbers and writes the response.

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;

use super::*;

/// RFC 5256 3: US-ASCII and UTF-8 are the charsets every server takes.
fn charset_ok(c: &Charset<'_>) -> bool {
    let c = c.as_ref();
    c.eq_ignore_ascii_case("UTF-8") || c.eq_ignore_ascii_case("US-ASCII")
}

const BADCHARSET: &str = "[BADCHARSET (US-ASCII UTF-8)] Charset not supported";

/// Sequence numbers of the UIDs of an answer, from the view's UIDs in
/// sequence order (ascending): one walk of the view, then, for a large
/// answer over UIDs dense enough (at most `DENSE` slots per message), a
/// table indexed by UID filled in one pass, so each number costs one
/// lookup; sparse UIDs fall back to a binary search per UID (the view's
/// own search walks its tree at every probe: about 0.1 s for 100,000).
struct Numbering {
    all: Vec<u32>,
    /// `table[uid - all[0]]`: the UID's position + 1; 0: not in the view.
    table: Vec<u32>,
}

/// Table slots per message at most (4 bytes each).
const DENSE: usize = 4;

impl Numbering {
    fn new(all: Vec<u32>, lookups: usize) -> Self {
        let table = match (all.first(), all.last()) {
            (Some(&lo), Some(&hi))
                if lookups > 256
                    && (hi.saturating_sub(lo) as usize) < all.len().saturating_mul(DENSE) =>
            {
                let mut t = vec![0u32; hi.saturating_sub(lo) as usize + 1];
                for (i, &u) in all.iter().enumerate() {
                    if let Some(slot) = u.checked_sub(lo).and_then(|d| t.get_mut(d as usize)) {
                        *slot = i as u32 + 1;
                    }
                }
                t
            }
            _ => Vec::new(),
        };
        Self { all, table }
    }

    /// The position (sequence number - 1) of `uid`, if the view has it.
    fn position(&self, uid: u32) -> Option<usize> {
        if self.table.is_empty() {
            return self.all.binary_search(&uid).ok();
        }
        let at = uid.checked_sub(*self.all.first()?)? as usize;
        match self.table.get(at) {
            Some(&p) if p > 0 => Some(p as usize - 1),
            _ => None,
        }
    }
}

impl Session {
    /// The store request parts every SORT and THREAD shares: the search
    /// key and the UIDs this session knows (a message not announced yet is
    /// not in the answer), and those UIDs in sequence order.
    fn sort_scope(
        &self,
        search: &[SearchKey<'_>],
    ) -> Result<(String, pb::SearchKey, pb::UidSet, Vec<u32>), Done> {
        let Some(view) = &self.view else {
            return Err(Done::bad("No mailbox selected"));
        };
        let key = crate::search::translate(search, view).map_err(|e| Done::bad(e.to_string()))?;
        let all = view.uids();
        let set = pb::UidSet::of(all.iter().copied());
        Ok((view.name.clone(), key, set, all))
    }

    /// Message numbers (or UIDs) of `uids` that this session knows, in
    /// their order (`all`: the view's UIDs, from `sort_scope`).
    fn numbers_of(&self, uids: &[u32], uid: bool, all: Vec<u32>) -> Vec<u32> {
        let Some(view) = &self.view else {
            return Vec::new();
        };
        let number = |u: u32, i: usize| if uid { u } else { i as u32 + 1 };
        if uids.len() > 256 {
            let n = Numbering::new(all, uids.len());
            return uids
                .iter()
                .filter_map(|&u| n.position(u).map(|i| number(u, i)))
                .collect();
        }
        uids.iter()
            .filter_map(|&u| view.position(u).map(|i| number(u, i)))
            .collect()
    }

    pub(super) async fn sort(
        &mut self,
        tag: &str,
        criteria: &[SortCriterion],
        charset: &Charset<'_>,
        search: &[SearchKey<'_>],
        uid: bool,
    ) -> Done {
        let ret = self.search_return.take();
        let update = ret.is_some_and(|o| o.update);
        if update && self.context_tag_in_use(tag) {
            return Done::bad("Tag reuse: that tag already has a search context");
        }
        if !charset_ok(charset) {
            return Done::no(BADCHARSET);
        }
        let (mailbox, key, uids, all) = match self.sort_scope(search) {
            Ok(s) => s,
            Err(d) => return d,
        };
        let criteria: Vec<pb::SortCriterion> = criteria
            .iter()
            .map(|c| pb::SortCriterion {
                field: match c.key {
                    SortKey::Arrival => pb::SortField::Arrival,
                    SortKey::Cc => pb::SortField::Cc,
                    SortKey::Date => pb::SortField::Date,
                    SortKey::From => pb::SortField::From,
                    SortKey::Size => pb::SortField::Size,
                    SortKey::Subject => pb::SortField::Subject,
                    SortKey::To => pb::SortField::To,
                    SortKey::DisplayFrom => pb::SortField::DisplayFrom,
                    SortKey::DisplayTo => pb::SortField::DisplayTo,
                } as i32,
                reverse: c.reverse,
            })
            .collect();
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let r = match c
            .sort(pb::SortRequest {
                mailbox,
                criteria: criteria.clone(),
                key: Some(key.clone()),
                uids: Some(uids),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let numbers = self.numbers_of(&r.uids, uid, all);
        // RFC 7162 3.1.5: with MODSEQ in the criteria, the highest MODSEQ
        // of what is returned.
        let modseq = if crate::search::has_modseq(search) && !numbers.is_empty() {
            self.view.as_ref().map(|v| {
                r.uids
                    .iter()
                    .filter_map(|&u| v.msg(u))
                    .map(|m| m.modseq)
                    .max()
                    .unwrap_or(0)
            })
        } else {
            None
        };
        match ret {
            Some(opts) => {
                if opts.save
                    && let Some(v) = &self.view
                {
                    self.saved = r
                        .uids
                        .iter()
                        .copied()
                        .filter(|&u| v.position(u).is_some())
                        .collect();
                    self.saved.sort_unstable();
                }
                if !opts.save_only() {
                    let mut line = imap_wire::ext::esort_response(tag, uid, &opts, &numbers);
                    if let Some(m) = modseq {
                        line.push_str(&format!(" MODSEQ {m}"));
                    }
                    self.push(&line);
                }
            }
            None => {
                let mut out = String::with_capacity(8 + numbers.len() * 7);
                out.push_str("* SORT");
                let mut digits = itoa::Buffer::new();
                for &n in &numbers {
                    out.push(' ');
                    out.push_str(digits.format(n));
                }
                if let Some(m) = modseq {
                    out.push_str(&format!(" (MODSEQ {m})"));
                }
                self.push(&out);
            }
        }
        if update {
            self.add_context(tag, uid, key, Some(criteria), &r.uids);
        }
        Done::ok(if uid {
            "UID SORT completed"
        } else {
            "SORT completed"
        })
    }

    pub(super) async fn thread(
        &mut self,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &Charset<'_>,
        search: &[SearchKey<'_>],
        uid: bool,
    ) -> Done {
        let algorithm = match algorithm {
            ThreadingAlgorithm::OrderedSubject => pb::ThreadAlgorithm::Orderedsubject,
            ThreadingAlgorithm::References => pb::ThreadAlgorithm::References,
            _ => return Done::bad("Threading algorithm not supported"),
        };
        if !charset_ok(charset) {
            return Done::no(BADCHARSET);
        }
        let (mailbox, key, uids, all) = match self.sort_scope(search) {
            Ok(s) => s,
            Err(d) => return d,
        };
        let Some(mut c) = self.client() else {
            return Done::bad("Log in first");
        };
        let r = match c
            .thread(pb::ThreadRequest {
                mailbox,
                algorithm: algorithm as i32,
                key: Some(key),
                uids: Some(uids),
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return store_no(&s),
        };
        let nodes: Vec<(u32, u32)> = match &self.view {
            Some(v) => {
                // Many nodes: numbered as `numbers_of` does for SORT.
                let many = (r.nodes.len() > 256).then(|| Numbering::new(all, r.nodes.len()));
                let position = |u: u32| match &many {
                    Some(n) => n.position(u),
                    None => v.position(u),
                };
                r.nodes
                    .iter()
                    .map(|n| {
                        let num = if n.uid == 0 {
                            0
                        } else {
                            position(n.uid).map_or(0, |i| if uid { n.uid } else { i as u32 + 1 })
                        };
                        (num, n.depth)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let mut line = String::with_capacity(16 + nodes.len() * 8);
        line.push_str("* THREAD ");
        thread_list(&nodes, &mut line);
        line.truncate(line.trim_end().len());
        self.push(&line);
        Done::ok(if uid {
            "UID THREAD completed"
        } else {
            "THREAD completed"
        })
    }
}

/// The `thread-list` of RFC 5256 4 from nodes in preorder with depths (0:
/// a thread's root): `(1 2 (3)(4 5))`. A node with one child continues
/// its list; with more, each child is a parenthesised list. A 0 is a
/// placeholder, written as nothing (`((3)(5))`). Iterative: any depth.
/// Appended to `out`.
pub(super) fn thread_list(nodes: &[(u32, u32)], out: &mut String) {
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    for (i, &(_, depth)) in nodes.iter().enumerate() {
        path.truncate(depth as usize);
        match path.last() {
            Some(&p) => kids[p].push(i),
            None => roots.push(i),
        }
        path.push(i);
    }
    enum Step {
        Node(usize),
        Text(&'static str),
    }
    let mut digits = itoa::Buffer::new();
    let mut stack: Vec<Step> = Vec::new();
    for &r in roots.iter().rev() {
        stack.extend([Step::Text(")"), Step::Node(r), Step::Text("(")]);
    }
    while let Some(step) = stack.pop() {
        let i = match step {
            Step::Text(t) => {
                out.push_str(t);
                continue;
            }
            Step::Node(i) => i,
        };
        let num = nodes[i].0;
        if num != 0 {
            out.push_str(digits.format(num));
        }
        match kids[i].as_slice() {
            [] => {}
            [only] if num != 0 => {
                out.push(' ');
                stack.push(Step::Node(*only));
            }
            many => {
                if num != 0 {
                    out.push(' ');
                }
                for &k in many.iter().rev() {
                    stack.extend([Step::Text(")"), Step::Node(k), Step::Text("(")]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Numbering, thread_list as append_thread_list};

    fn thread_list(nodes: &[(u32, u32)]) -> String {
        let mut out = String::new();
        append_thread_list(nodes, &mut out);
        out
    }

    /// Positions by table (dense UIDs) and by binary search (sparse UIDs,
    /// or few lookups) agree, and a UID the view lacks has none.
    #[test]
    fn numbering_by_table_and_by_search() {
        let dense: Vec<u32> = (1..=2000).filter(|u| u % 7 != 0).collect();
        let sparse: Vec<u32> = dense.iter().map(|u| u * 10).collect();
        for all in [dense, sparse] {
            let table = Numbering::new(all.clone(), 1000);
            let search = Numbering::new(all.clone(), 10);
            assert!(search.table.is_empty());
            for probe in 0..=all[all.len() - 1] + 20 {
                let want = all.binary_search(&probe).ok();
                assert_eq!(table.position(probe), want, "{probe}");
                assert_eq!(search.position(probe), want, "{probe}");
            }
        }
        assert!(!Numbering::new((1..=2000).collect(), 1000).table.is_empty());
        assert!(
            Numbering::new((1..=2000).map(|u| u * 10).collect(), 1000)
                .table
                .is_empty()
        );
        assert_eq!(Numbering::new(Vec::new(), 1000).position(1), None);
    }

    /// RFC 5256 4's example threads, from preorder and depths.
    #[test]
    fn thread_lists() {
        // (2)(3 6 (4 23)(44 7 96))
        let nodes = [
            (2, 0),
            (3, 0),
            (6, 1),
            (4, 2),
            (23, 3),
            (44, 2),
            (7, 3),
            (96, 4),
        ];
        assert_eq!(thread_list(&nodes), "(2)(3 6 (4 23)(44 7 96))");
        // A placeholder root: ((3)(5)).
        assert_eq!(thread_list(&[(0, 0), (3, 1), (5, 1)]), "((3)(5))");
        assert_eq!(thread_list(&[]), "");
        // Deep chains need no recursion.
        let chain: Vec<(u32, u32)> = (0..50_000).map(|i| (i + 1, i)).collect();
        let s = thread_list(&chain);
        assert!(s.starts_with("(1 2 3 ") && s.ends_with(" 50000)"));
    }
}
