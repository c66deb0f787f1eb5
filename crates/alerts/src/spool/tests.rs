use super::*;

fn cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_owned(),
        max_bytes: 10_000,
        segment_bytes: 300,
    }
}

fn payloads(from: u32, n: u32) -> Vec<Bytes> {
    (from..from + n)
        .map(|i| Bytes::from(format!("alert-{i:05}")))
        .collect()
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "spool"))
        .collect();
    v.sort();
    v
}

#[test]
fn append_reopen_commit_in_order() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut s, r) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(r, Recovery::default());
        let seqs = s.append_batch(&payloads(0, 40)).unwrap();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        assert!(seg_files(d.path()).len() > 1, "rolled segments");
        s.commit_through(15).unwrap();
        assert_eq!(s.len(), 25);
    }
    let (mut s, r) = Spool::open(cfg(d.path())).unwrap();
    assert_eq!(r.records, 25);
    let got: Vec<_> = s.peek(100).map(|r| r.payload.clone()).collect();
    assert_eq!(got, payloads(15, 25));
    assert_eq!(s.peek(1).next().unwrap().seq, 16);
    // New records continue the sequence.
    assert_eq!(s.append_batch(&payloads(40, 1)).unwrap(), vec![41]);
    s.commit_through(41).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.pending_bytes(), 0);
    // Fully delivered segments are deleted.
    assert!(seg_files(d.path()).is_empty());
    drop(s);
    let (mut s, r) = Spool::open(cfg(d.path())).unwrap();
    assert_eq!(r.records, 0);
    assert_eq!(s.append_batch(&payloads(0, 1)).unwrap(), vec![42]);
}

#[test]
fn bound_refuses_instead_of_dropping() {
    let d = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(SpoolConfig {
        max_bytes: 100,
        ..cfg(d.path())
    })
    .unwrap();
    // Each frame is 18 + 11 = 29 bytes: three fit in 100.
    let seqs = s.append_batch(&payloads(0, 5)).unwrap();
    assert_eq!(seqs.len(), 3);
    assert_eq!(s.append_batch(&payloads(5, 1)).unwrap().len(), 0);
    s.commit_through(1).unwrap();
    assert_eq!(s.append_batch(&payloads(5, 1)).unwrap(), vec![4]);
}

#[test]
fn second_opener_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _a = Spool::open(cfg(d.path())).unwrap();
    assert!(matches!(
        Spool::open(cfg(d.path())),
        Err(SpoolError::Locked(_))
    ));
}

#[test]
fn torn_tail_is_cut_at_every_offset() {
    // Simulate a crash at every byte of the last frame's write.
    let d0 = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(SpoolConfig {
            segment_bytes: 1 << 20,
            ..cfg(d0.path())
        })
        .unwrap();
        s.append_batch(&payloads(0, 3)).unwrap();
    }
    let seg = seg_files(d0.path()).pop().unwrap();
    let full = fs::read(&seg).unwrap();
    let frame = full.len() / 3;
    for cut in (2 * frame + 1)..full.len() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(seg.file_name().unwrap()), &full[..cut]).unwrap();
        let (mut s, r) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(r.records, 2, "cut at {cut}");
        assert_eq!(r.torn_bytes as usize, cut - 2 * frame);
        // And appending after the repair continues cleanly.
        assert_eq!(s.append_batch(&payloads(9, 1)).unwrap(), vec![3]);
        drop(s);
        let (s, r) = Spool::open(cfg(d.path())).unwrap();
        assert_eq!(r.torn_bytes, 0);
        let got: Vec<_> = s.peek(10).map(|r| r.payload.clone()).collect();
        assert_eq!(got[2], Bytes::from("alert-00009"));
    }
}

#[test]
fn damage_before_the_tail_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        s.append_batch(&payloads(0, 40)).unwrap();
    }
    let first = seg_files(d.path()).remove(0);
    let mut b = fs::read(&first).unwrap();
    b[HEADER + 3] ^= 0x40;
    fs::write(&first, b).unwrap();
    assert!(matches!(
        Spool::open(cfg(d.path())),
        Err(SpoolError::Corrupt { .. })
    ));
}

#[test]
fn missing_segment_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        s.append_batch(&payloads(0, 40)).unwrap();
    }
    let segs = seg_files(d.path());
    fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(
        Spool::open(cfg(d.path())),
        Err(SpoolError::Corrupt { .. })
    ));
}

#[test]
fn decode_never_panics_on_garbage() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 0..200 {
        let mut b = vec![0u8; len];
        for byte in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        if len > 2 {
            b[0] = MAGIC[0];
            b[1] = MAGIC[1];
        }
        let _ = decode(&b);
    }
}

#[test]
fn advance_without_persist_replays_after_a_crash() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut s, _) = Spool::open(cfg(d.path())).unwrap();
        s.append_batch(&payloads(0, 10)).unwrap();
        s.commit_through(3).unwrap();
        s.advance(7);
        assert_eq!(s.len(), 3);
        assert_eq!(s.unpersisted(), 4);
        // Crash: no persist.
    }
    let (s, r) = Spool::open(cfg(d.path())).unwrap();
    assert_eq!(r.records, 7, "records 4..=10 come back");
    assert_eq!(s.peek(1).next().unwrap().seq, 4);
}
