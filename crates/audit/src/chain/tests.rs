use super::*;
use serde_json::json;

fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&path).unwrap();
    for i in 1..=n {
        let r = log
            .append(NewRecord::new(
                "test.step",
                "tester",
                format!("c{i}"),
                json!({ "i": i, "f": 0.1 * i as f64, "s": "ünï\u{1}" }),
            ))
            .unwrap();
        assert_eq!(r.seq, i);
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn brk(path: &Path) -> Break {
    match verify(path, HeadPolicy::Require) {
        Err(ChainError::Broken { brk, .. }) => brk,
        other => panic!("expected a break, got {other:?}"),
    }
}

#[test]
fn intact_chain_verifies_and_reopens() {
    let (_d, path) = log_with(5);
    let rep = verify(&path, HeadPolicy::Require).unwrap();
    assert_eq!(rep.records, 5);
    assert_eq!(rep.head_lag, 0);
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 5);
    log.append(NewRecord::new("k", "a", "s", json!(null)))
        .unwrap();
    assert_eq!(verify(&path, HeadPolicy::Require).unwrap().records, 6);
}

#[test]
fn second_writer_is_refused() {
    let (_d, path) = log_with(1);
    let _w = AuditLog::open(&path).unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(ChainError::Locked { .. })
    ));
}

#[test]
fn changed_record_is_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"c3\"", "\"cX\"");
    write_lines(&path, &l);
    let b = brk(&path);
    assert_eq!(b, Break::HashMismatch { line: 3, seq: 3 });
    assert_eq!(b.seq(), Some(3));
}

#[test]
fn changed_record_with_recomputed_hash_breaks_next_prev() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    let mut r: AuditRecord = serde_json::from_str(&l[1]).unwrap();
    r.subject = "forged".into();
    r.hash = r.compute_hash();
    l[1] = serde_json::to_string(&r).unwrap();
    write_lines(&path, &l);
    assert_eq!(brk(&path), Break::PrevMismatch { line: 3, seq: 3 });
}

#[test]
fn whitespace_edit_is_caught() {
    let (_d, path) = log_with(3);
    let mut l = lines(&path);
    l[1] = l[1].replacen(':', ": ", 1);
    write_lines(&path, &l);
    assert_eq!(brk(&path), Break::NotCanonical { line: 2, seq: 2 });
}

#[test]
fn deleted_record_is_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    assert_eq!(
        brk(&path),
        Break::SeqGap {
            line: 2,
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn reordered_records_are_named() {
    let (_d, path) = log_with(5);
    let mut l = lines(&path);
    l.swap(2, 3);
    write_lines(&path, &l);
    assert_eq!(
        brk(&path),
        Break::SeqGap {
            line: 3,
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn records_cut_off_the_end_are_caught_by_the_head() {
    let (_d, path) = log_with(5);
    let l = lines(&path);
    write_lines(&path, &l[..3]);
    assert_eq!(
        brk(&path),
        Break::Truncated {
            last: 3,
            head_seq: 5
        }
    );
    // Without the head the cut is invisible: that is why the head is required by default.
    assert_eq!(verify(&path, HeadPolicy::Ignore).unwrap().records, 3);
    // And the writer refuses to continue a truncated chain.
    assert!(matches!(
        AuditLog::open(&path),
        Err(ChainError::Broken {
            brk: Break::Truncated { .. },
            ..
        })
    ));
}

#[test]
fn missing_head_is_reported() {
    let (_d, path) = log_with(2);
    std::fs::remove_file(head_path(&path)).unwrap();
    assert!(matches!(brk(&path), Break::HeadMissing { .. }));
}

#[test]
fn replaced_last_record_is_caught_by_the_head() {
    let (_d, path) = log_with(3);
    let mut l = lines(&path);
    let mut r: AuditRecord = serde_json::from_str(&l[2]).unwrap();
    r.details = json!("forged");
    r.hash = r.compute_hash();
    l[2] = serde_json::to_string(&r).unwrap();
    write_lines(&path, &l);
    assert_eq!(brk(&path), Break::HeadMismatch { seq: 3 });
}

#[test]
fn truncated_tail_line_is_named_and_repaired_on_open() {
    let (_d, path) = log_with(4);
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes.len() - 10;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let b = brk(&path);
    assert!(
        matches!(
            b,
            Break::TornTail {
                line: 4,
                expected: 4,
                ..
            }
        ),
        "{b:?}"
    );
    // The head still names record 4, which is now gone: a writer refuses (truncation).
    assert!(AuditLog::open(&path).is_err());
}

#[test]
fn torn_write_after_head_is_repaired_and_recorded() {
    let (_d, path) = log_with(2);
    // A crash in the middle of appending record 3: the head still names record 2.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"time\":\"20").unwrap();
    drop(f);
    let mut log = AuditLog::open(&path).unwrap();
    assert_eq!(log.last_seq(), 3);
    log.append(NewRecord::new("k", "a", "s", json!({})))
        .unwrap();
    let recs = read_records(&path).unwrap();
    assert_eq!(recs[2].kind, "audit.recovered");
    assert_eq!(recs[2].details["discarded_bytes"], 19);
    assert_eq!(verify(&path, HeadPolicy::Require).unwrap().records, 4);
}

#[test]
fn garbage_line_is_named() {
    let (_d, path) = log_with(2);
    let mut l = lines(&path);
    l.insert(1, "not json".into());
    write_lines(&path, &l);
    assert!(matches!(brk(&path), Break::NotARecord { line: 2, .. }));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Flipping any single byte of the log is always detected.
    #[test]
    fn any_byte_flip_is_detected(pos in 0usize..10_000, bit in 0u8..8) {
        let (_d, path) = log_with(3);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = pos % bytes.len();
        bytes[i] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        proptest::prop_assert!(verify(&path, HeadPolicy::Require).is_err());
    }
}
