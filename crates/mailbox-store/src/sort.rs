//! SORT and THREAD (RFC 5256) and SORT=DISPLAY (RFC 5957) over the keys
//! stored with each body ([`pb::SortKeys`]). Pure and iterative: a
//! mailbox whose messages reference each other in one long chain (or in
//! loops) costs bounded work and no deep recursion.

use std::cmp::Ordering;
use std::collections::HashMap;

use mailbox_api::pb;

/// One message to sort or thread.
#[derive(Debug, Clone, Default)]
pub struct Item {
    pub uid: u32,
    pub size: u64,
    /// INTERNALDATE, unix seconds.
    pub arrival: i64,
    pub keys: pb::SortKeys,
}

impl Item {
    /// RFC 5256 2.2: the sent date, or the INTERNALDATE without one.
    fn date(&self) -> i64 {
        if self.keys.sent_date != 0 {
            self.keys.sent_date
        } else {
            self.arrival
        }
    }
}

/// The form string keys are compared in: i;unicode-casemap (RFC 5051;
/// [`mail_summary::unicode_casemap`]), as Dovecot compares them, which
/// orders ASCII keys as i;ascii-casemap (RFC 4790 9.2) does and puts
/// accented letters beside their base letters (RFC 5957 3 decodes display
/// names to Unicode).
fn casemap(s: &str) -> Vec<u8> {
    mail_summary::unicode_casemap(s).into_bytes()
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Str(Vec<u8>),
}

/// The UIDs of `items` in the order of `criteria` (RFC 5256 3: each key
/// in turn, REVERSE per key, ties in sequence order, which is UID order).
/// The order is total and each message's place depends only on its own
/// keys, so the answer over a subset is the answer over all of them with
/// the others left out.
pub fn sort<'a>(
    items: impl IntoIterator<Item = &'a Item>,
    criteria: &[pb::SortCriterion],
) -> Vec<u32> {
    use pb::SortField as F;
    let fields: Vec<(F, bool)> = criteria
        .iter()
        .map(|c| (F::try_from(c.field).unwrap_or(F::Arrival), c.reverse))
        .collect();
    let mut keyed: Vec<(Vec<Key>, u32)> = items
        .into_iter()
        .map(|it| {
            let keys = fields
                .iter()
                .map(|(f, _)| match f {
                    F::Arrival => Key::Int(it.arrival),
                    F::Date => Key::Int(it.date()),
                    F::Size => Key::Int(it.size as i64),
                    F::From => Key::Str(casemap(&it.keys.from)),
                    F::To => Key::Str(casemap(&it.keys.to)),
                    F::Cc => Key::Str(casemap(&it.keys.cc)),
                    F::Subject => Key::Str(casemap(&it.keys.base_subject)),
                    F::DisplayFrom => Key::Str(casemap(&it.keys.display_from)),
                    F::DisplayTo => Key::Str(casemap(&it.keys.display_to)),
                })
                .collect();
            (keys, it.uid)
        })
        .collect();
    keyed.sort_by(|(a, ua), (b, ub)| {
        for (i, (_, reverse)) in fields.iter().enumerate() {
            let o = a[i].cmp(&b[i]);
            let o = if *reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        ua.cmp(ub)
    });
    keyed.into_iter().map(|(_, u)| u).collect()
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 3): messages grouped by base subject,
/// each group's first message (by sent date) the parent of the others,
/// the groups in the order of their first messages.
pub fn ordered_subject<'a>(items: impl IntoIterator<Item = &'a Item>) -> Vec<pb::ThreadNode> {
    let mut items: Vec<&Item> = items.into_iter().collect();
    items.sort_by(|a, b| {
        casemap(&a.keys.base_subject)
            .cmp(&casemap(&b.keys.base_subject))
            .then(a.date().cmp(&b.date()))
            .then(a.uid.cmp(&b.uid))
    });
    let mut groups: Vec<Vec<&Item>> = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for &it in &items {
        let s = casemap(&it.keys.base_subject);
        match groups.last_mut() {
            Some(g) if last.as_ref() == Some(&s) => g.push(it),
            _ => groups.push(vec![it]),
        }
        last = Some(s);
    }
    groups.sort_by(|a, b| a[0].date().cmp(&b[0].date()).then(a[0].uid.cmp(&b[0].uid)));
    let mut out = Vec::with_capacity(items.len());
    for g in groups {
        for (i, it) in g.iter().enumerate() {
            out.push(pb::ThreadNode {
                uid: it.uid,
                depth: u32::from(i > 0),
            });
        }
    }
    out
}

/// How far a loop check walks up a chain of parents: a References chain
/// deeper than this is cut there.
const MAX_WALK: usize = 4096;

/// Parent steps all loop checks of one THREAD may take together: a
/// mailbox built to make every check walk far gets its later links
/// refused (treated as loops) rather than minutes of work.
const WALK_BUDGET: usize = 20_000_000;

struct Container {
    /// Index into the items; `None` for a message referenced but not here.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
    /// This container's index in its parent's `children` (kept while
    /// step 1 links and unlinks, so an unlink costs O(1)).
    slot: usize,
}

struct Arena<'a> {
    items: &'a [&'a Item],
    c: Vec<Container>,
    budget: std::cell::Cell<usize>,
}

impl Arena<'_> {
    fn add(&mut self, msg: Option<usize>) -> usize {
        self.c.push(Container {
            msg,
            parent: None,
            children: Vec::new(),
            slot: 0,
        });
        self.c.len() - 1
    }

    /// Whether `a` is `b` or one of its ancestors (within the walk limit
    /// and budget; a chain too long to tell counts as a loop).
    fn is_ancestor(&self, a: usize, mut b: usize) -> bool {
        if a != b && self.c[a].children.is_empty() {
            // A leaf is nobody's ancestor.
            return false;
        }
        for _ in 0..MAX_WALK {
            if a == b {
                return true;
            }
            let left = self.budget.get();
            if left == 0 {
                return true;
            }
            self.budget.set(left - 1);
            match self.c[b].parent {
                Some(p) => b = p,
                None => return false,
            }
        }
        true
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            let slot = self.c[child].slot;
            let kids = &mut self.c[p].children;
            if kids.get(slot) == Some(&child) {
                kids.swap_remove(slot);
                if let Some(&moved) = kids.get(slot) {
                    self.c[moved].slot = slot;
                }
            } else {
                kids.retain(|&x| x != child);
            }
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.c[child].parent = Some(parent);
        self.c[child].slot = self.c[parent].children.len();
        self.c[parent].children.push(child);
    }

    fn is_dummy(&self, i: usize) -> bool {
        self.c[i].msg.is_none()
    }

    /// The message a container stands for in comparisons: its own, or a
    /// dummy's first child's (RFC 5256 3, steps 5.A and 6).
    fn stand_in(&self, i: usize) -> Option<&Item> {
        let mut i = i;
        for _ in 0..MAX_WALK {
            match self.c[i].msg {
                Some(m) => return Some(self.items[m]),
                None => i = *self.c[i].children.first()?,
            }
        }
        None
    }

    fn order(&self, a: usize, b: usize) -> Ordering {
        match (self.stand_in(a), self.stand_in(b)) {
            (Some(x), Some(y)) => x.date().cmp(&y.date()).then(x.uid.cmp(&y.uid)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }

    fn subject(&self, i: usize) -> Option<(Vec<u8>, bool)> {
        let it = self.stand_in(i)?;
        let s = casemap(&it.keys.base_subject);
        (!s.is_empty()).then_some((s, self.c[i].msg.is_some() && it.keys.is_reply))
    }
}

/// THREAD=REFERENCES (RFC 5256 3): threads from Message-ID, References and
/// In-Reply-To, placeholders for missing parents pruned, threads with the
/// same base subject gathered, siblings in sent-date order.
pub fn references<'a>(items: impl IntoIterator<Item = &'a Item>) -> Vec<pb::ThreadNode> {
    let items: Vec<&Item> = items.into_iter().collect();
    let mut a = Arena {
        items: &items,
        c: Vec::with_capacity(items.len() * 2),
        budget: std::cell::Cell::new(WALK_BUDGET),
    };
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(items.len() * 2);
    // Step 1, in mailbox order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].uid);
    for &m in &order {
        let k = &items[m].keys;
        // 1.A: this message's container; a duplicate or missing Message-ID
        // gets a container of its own.
        let me = match ids.get(k.message_id.as_str()) {
            Some(&c) if !k.message_id.is_empty() && a.c[c].msg.is_none() => {
                a.c[c].msg = Some(m);
                c
            }
            Some(_) => a.add(Some(m)),
            None => {
                let c = a.add(Some(m));
                if !k.message_id.is_empty() {
                    ids.insert(k.message_id.as_str(), c);
                }
                c
            }
        };
        // 1.B: link the references in order, never re-parenting and never
        // making a loop.
        let mut prev: Option<usize> = None;
        let mut last = None;
        for r in &k.references {
            let c = match ids.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = a.add(None);
                    ids.insert(r.as_str(), c);
                    c
                }
            };
            if let Some(p) = prev
                && a.c[c].parent.is_none()
                && !a.is_ancestor(c, p)
            {
                a.link(p, c);
            }
            prev = Some(c);
            last = Some(c);
        }
        // 1.C: the last reference is this message's parent (none without
        // references), replacing any parent it had, unless that loops.
        a.unlink(me);
        if let Some(p) = last
            && !a.is_ancestor(me, p)
        {
            a.link(p, me);
        }
    }
    // Step 2: the root set.
    let roots: Vec<usize> = (0..a.c.len())
        .filter(|&i| a.c[i].parent.is_none())
        .collect();
    // Step 4: prune placeholders, children first.
    let mut roots = prune(&mut a, roots);
    // Step 6 (children first, so 5 sees each dummy's first child).
    sort_children(&mut a, &roots);
    // Step 5: gather roots by base subject.
    let mut table: HashMap<Vec<u8>, usize> = HashMap::new();
    for &r in &roots {
        let Some((s, reply)) = a.subject(r) else {
            continue;
        };
        match table.get(&s) {
            None => {
                table.insert(s, r);
            }
            Some(&t) => {
                let t_reply = a.subject(t).is_some_and(|(_, x)| x);
                if (!a.is_dummy(t) && a.is_dummy(r)) || (t_reply && !reply && !a.is_dummy(r)) {
                    table.insert(s, r);
                }
            }
        }
    }
    let mut gone = vec![false; a.c.len()];
    let mut extra_roots = Vec::new();
    for &r in &roots {
        let Some((s, reply)) = a.subject(r) else {
            continue;
        };
        let Some(&t) = table.get(&s) else { continue };
        if t == r || gone[r] {
            continue;
        }
        let t_reply = a.subject(t).is_some_and(|(_, x)| x);
        if a.is_dummy(t) && a.is_dummy(r) {
            let kids = std::mem::take(&mut a.c[r].children);
            for k in kids {
                a.c[k].parent = None;
                a.link(t, k);
            }
            gone[r] = true;
        } else if (a.is_dummy(t) && !a.is_dummy(r)) || (!a.is_dummy(t) && reply && !t_reply) {
            // Under a placeholder, or a reply under the original.
            a.link(t, r);
            gone[r] = true;
        } else {
            let d = a.add(None);
            gone.push(false);
            a.link(d, t);
            a.link(d, r);
            gone[t] = true;
            gone[r] = true;
            table.insert(s, d);
            extra_roots.push(d);
        }
    }
    roots.retain(|&r| !gone[r]);
    roots.extend(extra_roots);
    // Step 6 again where step 5 added children, and for the roots.
    sort_children(&mut a, &roots);
    roots.sort_by(|&x, &y| a.order(x, y));
    // Preorder with depths.
    let mut out = Vec::with_capacity(items.len());
    let mut stack: Vec<(usize, u32)> = roots.iter().rev().map(|&r| (r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        out.push(pb::ThreadNode {
            uid: a.c[i].msg.map_or(0, |m| items[m].uid),
            depth,
        });
        for &k in a.c[i].children.iter().rev() {
            stack.push((k, depth + 1));
        }
    }
    out
}

/// RFC 5256 3 step 4: a placeholder without children goes; one with
/// children is replaced by them, except at the top where it stays when
/// it has more than one. Returns the new root set.
/// Every container under `roots`, children before their parent, without
/// recursion.
fn post_order(a: &Arena<'_>, roots: &[usize]) -> Vec<usize> {
    let mut post = Vec::with_capacity(a.c.len());
    let mut stack: Vec<(usize, bool)> = roots.iter().map(|&r| (r, false)).collect();
    while let Some((i, done)) = stack.pop() {
        if done {
            post.push(i);
            continue;
        }
        stack.push((i, true));
        for &k in &a.c[i].children {
            stack.push((k, false));
        }
    }
    post
}

fn prune(a: &mut Arena<'_>, roots: Vec<usize>) -> Vec<usize> {
    for i in post_order(a, &roots) {
        let Some(p) = a.c[i].parent else { continue };
        if a.c[i].msg.is_some() {
            continue;
        }
        // A placeholder below the top: its children take its place.
        let kids = std::mem::take(&mut a.c[i].children);
        let at = a.c[p].children.iter().position(|&x| x == i).unwrap_or(0);
        a.c[p].children.retain(|&x| x != i);
        for (n, &k) in kids.iter().enumerate() {
            a.c[k].parent = Some(p);
            let pos = (at + n).min(a.c[p].children.len());
            a.c[p].children.insert(pos, k);
        }
        a.c[i].parent = None;
    }
    let mut out = Vec::with_capacity(roots.len());
    for r in roots {
        if a.c[r].msg.is_some() {
            out.push(r);
            continue;
        }
        match a.c[r].children.len() {
            0 => {}
            1 => {
                let k = a.c[r].children[0];
                a.c[r].children.clear();
                a.c[k].parent = None;
                out.push(k);
            }
            _ => out.push(r),
        }
    }
    out
}

/// RFC 5256 3 step 6: every set of siblings below `roots` in sent-date
/// order (a placeholder by its first child), the deepest first.
fn sort_children(a: &mut Arena<'_>, roots: &[usize]) {
    for i in post_order(a, roots) {
        let mut kids = std::mem::take(&mut a.c[i].children);
        kids.sort_by(|&x, &y| a.order(x, y));
        a.c[i].children = kids;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn item(uid: u32, date: i64, subject: &str, id: &str, refs: &[&str]) -> Item {
        let (base, reply) = mail_summary::base_subject(subject);
        Item {
            uid,
            size: u64::from(uid) * 10,
            arrival: 1000 + i64::from(uid),
            keys: pb::SortKeys {
                sent_date: date,
                base_subject: base,
                is_reply: reply,
                message_id: id.into(),
                references: refs.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    /// The IMAP form of a thread list, for readable assertions.
    fn show(nodes: &[pb::ThreadNode]) -> String {
        // Children of each node, from preorder + depth.
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut roots = Vec::new();
        let mut path: Vec<usize> = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            path.truncate(n.depth as usize);
            match path.last() {
                Some(&p) => kids[p].push(i),
                None => roots.push(i),
            }
            path.push(i);
        }
        fn one(i: usize, nodes: &[pb::ThreadNode], kids: &[Vec<usize>]) -> String {
            let mut s = if nodes[i].uid == 0 {
                String::new()
            } else {
                nodes[i].uid.to_string()
            };
            match kids[i].len() {
                0 => {}
                1 if nodes[i].uid != 0 => {
                    s.push(' ');
                    s.push_str(&one(kids[i][0], nodes, kids));
                }
                _ => {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    for &k in &kids[i] {
                        s.push_str(&format!("({})", one(k, nodes, kids)));
                    }
                }
            }
            s
        }
        roots
            .iter()
            .map(|&r| format!("({})", one(r, nodes, &kids)))
            .collect()
    }

    #[test]
    fn sort_keys_reverse_and_ties() {
        let mut items = vec![
            item(1, 30, "b", "", &[]),
            item(2, 10, "Re: a", "", &[]),
            item(3, 20, "A", "", &[]),
            item(4, 0, "c", "", &[]),
        ];
        items[0].keys.from = "zed".into();
        items[1].keys.from = "Amy".into();
        items[2].keys.from = "amy".into();
        let c = |f: pb::SortField, reverse| pb::SortCriterion {
            field: f as i32,
            reverse,
        };
        use pb::SortField as F;
        assert_eq!(sort(&items, &[c(F::Date, false)]), vec![2, 3, 1, 4]);
        assert_eq!(sort(&items, &[c(F::Subject, false)]), vec![2, 3, 1, 4]);
        assert_eq!(sort(&items, &[c(F::Size, true)]), vec![4, 3, 2, 1]);
        // Equal FROM (case-insensitive), then reverse DATE; "" sorts first.
        assert_eq!(
            sort(&items, &[c(F::From, false), c(F::Date, true)]),
            vec![4, 3, 2, 1]
        );
        assert_eq!(sort(&items, &[c(F::Arrival, true)]), vec![4, 3, 2, 1]);
    }

    /// The order of a subset is the whole order with the others left out
    /// (what lets the store answer a SORT over some messages from the
    /// order it kept for all of them), ties included.
    #[test]
    fn a_subset_sorts_as_the_whole_order_without_the_others() {
        let subjects = ["b", "Re: a", "A", "c", "", "B"];
        let items: Vec<Item> = (1..=60u32)
            .map(|u| {
                let n = u as usize;
                let mut it = item(u, (n as i64 * 7) % 5, subjects[n % 6], "", &[]);
                it.keys.from = ["zed", "Amy", "amy", ""][n % 4].into();
                it.keys.display_from = ["\u{e9}mile", "Emil", "x"][n % 3].into();
                it.size = (n as u64 * 13) % 7;
                it
            })
            .collect();
        use pb::SortField as F;
        let c = |f: F, reverse| pb::SortCriterion {
            field: f as i32,
            reverse,
        };
        let orders = [
            vec![c(F::Date, false)],
            vec![c(F::Subject, true), c(F::Size, false)],
            vec![c(F::From, false), c(F::Date, true)],
            vec![c(F::DisplayFrom, true)],
            vec![c(F::Arrival, true)],
        ];
        for criteria in &orders {
            let all = sort(&items, criteria);
            for step in [2, 3, 7] {
                let some: Vec<&Item> = items.iter().filter(|i| i.uid % step != 0).collect();
                let want: Vec<u32> = all.iter().copied().filter(|u| u % step != 0).collect();
                assert_eq!(sort(some, criteria), want, "{criteria:?} / {step}");
            }
        }
    }

    /// RFC 5957 3 decodes display names to Unicode; compared as
    /// i;unicode-casemap (RFC 5051), an accented name sorts beside its
    /// base letter and case does not count, ASCII or not.
    #[test]
    fn display_keys_compare_as_unicode_casemap() {
        let names = ["Zed", "\u{e9}mile", "Emil", "\u{c9}MILE", "fay", "", "Adam"];
        let items: Vec<Item> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut it = item(i as u32 + 1, 0, "", "", &[]);
                it.keys.display_to = (*n).into();
                it
            })
            .collect();
        let c = |reverse| pb::SortCriterion {
            field: pb::SortField::DisplayTo as i32,
            reverse,
        };
        // "", Adam, Emil, émile = ÉMILE (ties by number), fay, Zed.
        assert_eq!(sort(&items, &[c(false)]), vec![6, 7, 3, 2, 4, 5, 1]);
        assert_eq!(sort(&items, &[c(true)]), vec![1, 5, 2, 4, 3, 7, 6]);
    }

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        let items = vec![
            item(1, 10, "Hello", "", &[]),
            item(2, 30, "Re: hello", "", &[]),
            item(3, 5, "Other", "", &[]),
            item(4, 20, "Fwd: Hello", "", &[]),
            item(5, 40, "Re: other", "", &[]),
            item(6, 50, "Lone", "", &[]),
        ];
        assert_eq!(show(&ordered_subject(&items)), "(3 5)(1 (4)(2))(6)");
    }

    #[test]
    fn references_threads_prunes_and_gathers() {
        let items = vec![
            item(1, 10, "Plans", "a@x", &[]),
            item(2, 20, "Re: Plans", "b@x", &["a@x"]),
            item(3, 30, "Re: Plans", "c@x", &["a@x", "b@x"]),
            item(4, 25, "Re: Plans", "d@x", &["a@x"]),
            // Parent missing: placeholder pruned, child promoted.
            item(5, 5, "Lunch", "e@x", &["missing@x"]),
            // Two replies to one missing message: a placeholder root.
            item(6, 50, "Re: Gone", "f@x", &["gone@x"]),
            item(7, 60, "Re: Gone", "g@x", &["gone@x"]),
            // Same base subject, no references: gathered under Plans.
            item(8, 70, "Re: Plans", "h@x", &[]),
            // A duplicate Message-ID and a loop.
            item(9, 80, "Dup", "a@x", &["i@x"]),
            item(10, 90, "Loop", "i@x", &["j@x"]),
            item(11, 95, "Loop", "j@x", &["i@x"]),
        ];
        assert_eq!(
            show(&references(&items)),
            "(5)(1 (2 3)(4)(8))((6)(7))(11 10 9)"
        );
    }

    /// References built to make threading slow (each message re-parenting
    /// a child of one huge sibling list, and every check walking a deep
    /// chain) still thread, every message once.
    #[test]
    fn hostile_references_stay_bounded() {
        let n = 20_000u32;
        let mut items: Vec<Item> = (1..=n)
            .map(|i| {
                let (id, next) = (format!("m{i}"), format!("m{}", i + 1));
                item(i, i64::from(i), "x", &id, &["root", &next])
            })
            .collect();
        // A deep chain, then messages whose references jump from its leaf
        // back to its root again and again.
        for i in 1..=5_000u32 {
            let (id, parent) = (format!("c{i}"), format!("c{}", i - 1));
            items.push(item(n + i, 0, "y", &id, &[&parent]));
        }
        for i in 1..=2_000u32 {
            let refs: Vec<String> = (0..64)
                .map(|k| {
                    if k % 2 == 0 {
                        "c5000".into()
                    } else {
                        "c1".into()
                    }
                })
                .collect();
            let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
            items.push(item(n + 5_000 + i, 0, "z", &format!("h{i}"), &refs));
        }
        let total = items.len();
        let nodes = references(&items);
        let real: Vec<u32> = nodes.iter().map(|n| n.uid).filter(|&u| u != 0).collect();
        assert_eq!(real.len(), total);
    }

    /// A chain of 20,000 replies threads whole, without deep recursion (a
    /// new message is a leaf: linking it needs no walk up the chain).
    #[test]
    fn a_long_chain_is_fine() {
        let n = 20_000u32;
        let items: Vec<Item> = (1..=n)
            .map(|i| {
                let id = format!("m{i}");
                let parent = format!("m{}", i - 1);
                let refs: Vec<&str> = if i > 1 { vec![parent.as_str()] } else { vec![] };
                item(i, i64::from(i), "chain", &id, &refs)
            })
            .collect();
        let nodes = references(&items);
        assert_eq!(nodes.len(), n as usize);
        assert!(nodes.iter().all(|n| n.uid != 0));
        // One thread, the chain whole: depth n - 1 at its end.
        assert_eq!(nodes.iter().filter(|n| n.depth == 0).count(), 1);
        assert_eq!(nodes.iter().map(|n| n.depth).max(), Some(n - 1));
    }
}
