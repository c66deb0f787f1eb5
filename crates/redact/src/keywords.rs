//! The keyword automaton: every occurrence of every keyword (ASCII case-insensitive), in one walk.
//!
//! An Aho-Corasick DFA of our own rather than `aho_corasick::dfa::DFA`, because the walk is the
//! hot loop of a clean line and its speed is the latency of one table load per byte:
//! - transitions are `u16` over byte classes (about 45: the bytes the keywords use, case folded,
//!   plus "any other"), so the whole table is ~90 KiB instead of ~600 KiB and its hot rows stay
//!   in L1;
//! - a state is its row's offset in the table (premultiplied), so a step is one add and one load;
//! - a state that reports keywords has an odd offset (its row starts one entry late; the stride
//!   is even and leaves room), so "did anything match" over several walks is one OR and one test.

/// A table entry: the premultiplied id of the next state.
trait Entry: Copy {
    fn idx(self) -> usize;
    fn from_idx(i: usize) -> Self;
}

impl Entry for u16 {
    #[inline(always)]
    fn idx(self) -> usize {
        usize::from(self)
    }
    fn from_idx(i: usize) -> Self {
        i as u16
    }
}

impl Entry for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
    fn from_idx(i: usize) -> Self {
        i as u32
    }
}

/// `u16` while the table fits (the built-in keywords do), else `u32` (many custom keywords).
#[derive(Debug)]
enum Table {
    Small(Vec<u16>),
    Large(Vec<u32>),
}

/// The compiled keywords.
#[derive(Debug)]
pub(crate) struct Keywords {
    /// Byte → class; ASCII letters fold to one class, bytes in no keyword are class 0.
    classes: [u8; 256],
    /// Table entries per state (even, > number of classes).
    stride: usize,
    table: Table,
    /// For each state (offset / stride), the keywords that end there (empty for most).
    outputs: Vec<Vec<u32>>,
    /// Longest keyword, bytes.
    max_len: usize,
    /// Length of each keyword, bytes.
    lens: Vec<usize>,
}

impl Keywords {
    /// Compile `patterns` (non-empty byte strings; ASCII case is ignored). Pattern `i` is
    /// reported as `i`.
    pub(crate) fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Keywords {
        let fold = |b: u8| b.to_ascii_lowercase();
        let mut classes = [0u8; 256];
        let mut n_classes = 1usize;
        for p in patterns {
            for &b in p.as_ref() {
                let b = fold(b);
                if classes[b as usize] == 0 {
                    classes[b as usize] = n_classes as u8;
                    classes[b.to_ascii_uppercase() as usize] = n_classes as u8;
                    n_classes += 1;
                }
            }
        }
        // The trie: `goto[s][c]`, 0 = none (the root is never a child).
        let mut goto: Vec<Vec<u32>> = vec![vec![0; n_classes]];
        let mut own: Vec<Vec<u32>> = vec![Vec::new()];
        for (i, p) in patterns.iter().enumerate() {
            let mut s = 0usize;
            for &b in p.as_ref() {
                let c = classes[b as usize] as usize;
                if goto[s][c] == 0 {
                    goto.push(vec![0; n_classes]);
                    own.push(Vec::new());
                    goto[s][c] = (goto.len() - 1) as u32;
                }
                s = goto[s][c] as usize;
            }
            if s != 0 {
                own[s].push(i as u32);
            }
        }
        // Breadth first: failure links, outputs (own plus the failure state's), full transitions.
        let n = goto.len();
        let mut delta = vec![vec![0u32; n_classes]; n];
        let mut fail = vec![0u32; n];
        let mut outputs = own;
        let mut queue = std::collections::VecDeque::new();
        for c in 0..n_classes {
            let t = goto[0][c];
            delta[0][c] = t;
            if t != 0 {
                queue.push_back(t as usize);
            }
        }
        while let Some(s) = queue.pop_front() {
            let f = fail[s] as usize;
            let inherited = outputs[f].clone();
            outputs[s].extend(inherited);
            for c in 0..n_classes {
                let t = goto[s][c];
                if t != 0 {
                    fail[t as usize] = delta[f][c];
                    delta[s][c] = t;
                    queue.push_back(t as usize);
                } else {
                    delta[s][c] = delta[f][c];
                }
            }
        }
        let stride = (n_classes + 2) & !1;
        let id = |s: usize| s * stride + usize::from(!outputs[s].is_empty());
        let len = n * stride + 1;
        let fill = |set: &mut dyn FnMut(usize, usize)| {
            for (s, row) in delta.iter().enumerate() {
                for (c, &t) in row.iter().enumerate() {
                    set(id(s) + c, id(t as usize));
                }
            }
        };
        let table = if len <= usize::from(u16::MAX) {
            let mut t = vec![0u16; len];
            fill(&mut |i, v| t[i] = u16::from_idx(v));
            Table::Small(t)
        } else {
            let mut t = vec![0u32; len];
            fill(&mut |i, v| t[i] = u32::from_idx(v));
            Table::Large(t)
        };
        Keywords {
            classes,
            stride,
            table,
            outputs,
            max_len: patterns.iter().map(|p| p.as_ref().len()).max().unwrap_or(0),
            lens: patterns.iter().map(|p| p.as_ref().len()).collect(),
        }
    }

    /// The length of keyword `p`, bytes.
    pub(crate) fn len(&self, p: u32) -> usize {
        self.lens[p as usize]
    }

    /// Calls `on(keyword, end)` with every keyword that ends in `hay`, where `end` is the index
    /// after its last byte (overlapping ones too; a keyword may be reported more than once, and
    /// not in order).
    pub(crate) fn for_each(&self, hay: &[u8], on: &mut impl FnMut(u32, usize)) {
        match &self.table {
            Table::Small(t) => self.walk(t, hay, on),
            Table::Large(t) => self.walk(t, hay, on),
        }
    }

    #[inline(always)]
    fn report(&self, s: usize, end: usize, on: &mut impl FnMut(u32, usize)) {
        if s & 1 != 0 {
            for &p in &self.outputs[s / self.stride] {
                on(p, end);
            }
        }
    }

    /// The walk is a chain of dependent loads, so its speed is the load latency, not the CPU's
    /// width. A haystack is therefore walked as four parts at once: independent chains, whose
    /// loads the CPU overlaps. Each part after the first starts `max_len - 1` bytes before the
    /// previous one ends, so a keyword across a boundary is still seen whole by one of them.
    ///
    /// The parts are of one length, the last ending where the haystack does, so the four walks
    /// end together: with parts cut at quarters, the overlaps and the remainder were walked one
    /// chain at a time after the four-way loop, a third of the steps of a typical line.
    #[inline(always)]
    fn walk<T: Entry>(&self, t: &[T], hay: &[u8], on: &mut impl FnMut(u32, usize)) {
        let cl = &self.classes;
        let step = |s: usize, b: u8| t[s + usize::from(cl[b as usize])].idx();
        let overlap = self.max_len.saturating_sub(1);
        let len = hay.len();
        if len < 2 * overlap + 16 {
            let mut s = 0usize;
            for (i, &b) in hay.iter().enumerate() {
                s = step(s, b);
                self.report(s, i + 1, on);
            }
            return;
        }
        // Four parts of `part` bytes, each overlapping the next by `overlap` and covering
        // `hay`: 4 * part - 3 * overlap >= len.
        let part = (len + 3 * overlap).div_ceil(4);
        let starts = [
            0,
            part - overlap,
            (2 * (part - overlap)).min(len - part),
            len - part,
        ];
        let [p0, p1, p2, p3] = starts.map(|s| &hay[s..s + part]);
        let (mut s0, mut s1, mut s2, mut s3) = (0, 0, 0, 0);
        for (i, (((&a, &b), &c), &d)) in p0.iter().zip(p1).zip(p2).zip(p3).enumerate() {
            s0 = step(s0, a);
            s1 = step(s1, b);
            s2 = step(s2, c);
            s3 = step(s3, d);
            if (s0 | s1 | s2 | s3) & 1 != 0 {
                self.report(s0, starts[0] + i + 1, on);
                self.report(s1, starts[1] + i + 1, on);
                self.report(s2, starts[2] + i + 1, on);
                self.report(s3, starts[3] + i + 1, on);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Keywords;

    fn found(k: &Keywords, hay: &str) -> Vec<u32> {
        let mut v = Vec::new();
        k.for_each(hay.as_bytes(), &mut |p, end| {
            assert!(k.len(p) <= end && end <= hay.len());
            v.push(p)
        });
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn finds_overlapping_case_insensitive() {
        let k = Keywords::new(&["token", "ken", "secret", "a", "--pass"]);
        assert_eq!(found(&k, "x TOKEN y"), vec![0, 1]);
        assert_eq!(found(&k, "SeCrEt"), vec![2]);
        assert_eq!(found(&k, "xyz"), Vec::<u32>::new());
        assert_eq!(found(&k, "--PASSWORD"), vec![3, 4]);
    }

    #[test]
    fn agrees_with_naive_search_at_every_split() {
        let pats = [
            "authorization",
            "auth",
            "ghp_",
            "pwd",
            "sk-ant-",
            "://",
            "eyj",
            "pw",
        ];
        let k = Keywords::new(&pats);
        // Lengths around the two- and four-part thresholds, keywords at every offset.
        for len in [1usize, 20, 40, 60, 70, 100, 130, 200, 300] {
            for (pi, p) in pats.iter().enumerate() {
                for at in 0..len.saturating_sub(p.len()) {
                    let mut hay = "x".repeat(len).into_bytes();
                    hay[at..at + p.len()].copy_from_slice(p.to_ascii_uppercase().as_bytes());
                    let mut v = Vec::new();
                    k.for_each(&hay, &mut |p, end| v.push((p, end)));
                    assert!(
                        v.contains(&(pi as u32, at + p.len())),
                        "{p} at {at} of {len}"
                    );
                    for (q, end) in v {
                        let kw = pats[q as usize].as_bytes();
                        assert!(
                            hay[end - kw.len()..end].eq_ignore_ascii_case(kw),
                            "{q} {end}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn large_tables_work_too() {
        let pats: Vec<String> = (0..3000).map(|i| format!("kw{i}x")).collect();
        let k = Keywords::new(&pats);
        assert!(matches!(k.table, super::Table::Large(_)));
        assert_eq!(found(&k, "a KW2999X b kw7x"), vec![7, 2999]);
    }
}
