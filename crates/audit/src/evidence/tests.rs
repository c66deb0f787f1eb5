use super::*;
use crate::chain::{read_records, verify, HeadPolicy};

/// A temp dir whose immutable evidence is unlocked before deletion, even if a test fails.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(self.0.path());
    }
}

fn sealed() -> (Scratch, EvidenceStore, SealReport, PathBuf) {
    let s = Scratch(tempfile::tempdir().unwrap());
    let store = EvidenceStore::open(&s.0.path().join("evidence")).unwrap();
    let audit_path = s.0.path().join("audit.log");
    let mut audit = AuditLog::open(&audit_path).unwrap();
    let mut w = store
        .writer(
            serde_json::json!({"container": "c1", "rule": "shell"}),
            Bounds::default(),
        )
        .unwrap();
    w.add_file("ps.txt", b"1 init\n2 sh\n").unwrap();
    w.add_file("fs/etc/passwd", b"root:x:0:0\n").unwrap();
    w.add_json("event.json", &serde_json::json!({"pid": 2}))
        .unwrap();
    let rep = w.seal(&mut audit, "test").unwrap();
    (s, store, rep, audit_path)
}

/// Runs `f` on the bundle directory with its protection lifted, as an attacker with root and
/// `CAP_LINUX_IMMUTABLE` could.
fn tamper(dir: &Path, f: impl FnOnce(&Path)) {
    immutable::clear_tree(dir).unwrap();
    make_writable(dir).unwrap();
    f(dir);
}

fn problems(store: &EvidenceStore, id: &str) -> Vec<BundleProblem> {
    match store.verify(id) {
        Err(BundleError::Tampered { problems, .. }) => problems,
        other => panic!("expected tampering, got {other:?}"),
    }
}

#[test]
fn sealed_bundle_verifies_is_protected_and_audited() {
    let (_s, store, rep, audit_path) = sealed();
    assert_eq!(rep.files, 3);
    let m = store.verify(&rep.id).unwrap();
    assert_eq!(m.files.len(), 3);
    assert!(m.protection.immutable, "{:?}", m.protection);
    assert!(rep.immutable);
    // The bytes on disk hash to the id.
    let bytes = fs::read(rep.path.join(MANIFEST)).unwrap();
    assert_eq!(blake3::hash(&bytes).to_hex().to_string(), rep.id);
    // Read-only and immutable: even root cannot write or add.
    let p = rep.path.join("ps.txt");
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(fs::OpenOptions::new().append(true).open(&p).is_err());
    assert!(fs::write(rep.path.join("new"), b"x").is_err());
    assert!(fs::remove_file(&p).is_err());
    // The audit chain holds the manifest hash.
    verify(&audit_path, HeadPolicy::Require).unwrap();
    let recs = read_records(&audit_path).unwrap();
    assert_eq!(recs.last().unwrap().kind, "evidence.sealed");
    assert_eq!(recs.last().unwrap().subject, rep.id);
    assert_eq!(rep.audit_seq, recs.last().unwrap().seq);
    // Listed.
    let l = store.list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, rep.id);
}

#[test]
fn changed_file_is_named() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        let p = d.join("ps.txt");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&p, b"1 init\n2 XX\n").unwrap();
    });
    assert_eq!(
        problems(&store, &rep.id),
        vec![BundleProblem::Changed {
            path: "ps.txt".into()
        }]
    );
}

#[test]
fn missing_file_is_named() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        fs::remove_file(d.join("fs/etc/passwd")).unwrap()
    });
    assert_eq!(
        problems(&store, &rep.id),
        vec![BundleProblem::Missing {
            path: "fs/etc/passwd".into()
        }]
    );
}

#[test]
fn extra_file_is_named() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        fs::write(d.join("fs/planted"), b"x").unwrap()
    });
    assert_eq!(
        problems(&store, &rep.id),
        vec![BundleProblem::Extra {
            path: "fs/planted".into()
        }]
    );
}

#[test]
fn truncated_file_is_named() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        let p = d.join("ps.txt");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(3)
            .unwrap();
    });
    assert_eq!(
        problems(&store, &rep.id),
        vec![BundleProblem::Truncated {
            path: "ps.txt".into(),
            expected: 12,
            actual: 3
        }]
    );
}

#[test]
fn changed_manifest_is_named() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        let p = d.join(MANIFEST);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let s = fs::read_to_string(&p).unwrap().replace("shell", "benign");
        fs::write(&p, s).unwrap();
    });
    assert!(matches!(
        problems(&store, &rep.id)[..],
        [BundleProblem::ManifestChanged { .. }]
    ));
}

#[test]
fn symlink_is_refused() {
    let (_s, store, rep, _) = sealed();
    tamper(&rep.path, |d| {
        std::os::unix::fs::symlink("/etc/hostname", d.join("link")).unwrap()
    });
    assert_eq!(
        problems(&store, &rep.id),
        vec![BundleProblem::NotRegular {
            path: "link".into()
        }]
    );
}

#[test]
fn bounds_cut_and_flag() {
    let s = Scratch(tempfile::tempdir().unwrap());
    let store = EvidenceStore::open(&s.0.path().join("ev")).unwrap();
    let mut audit = AuditLog::open(&s.0.path().join("a.log")).unwrap();
    let mut w = store
        .writer(
            serde_json::Value::Null,
            Bounds {
                max_file_bytes: 10,
                max_total_bytes: 15,
            },
        )
        .unwrap();
    assert!(!w.add_file("a", &[1; 10]).unwrap().truncated);
    let b = w.add_file("b", &[2; 10]).unwrap().clone();
    assert!(b.truncated);
    assert_eq!(b.size, 5);
    let rep = w.seal(&mut audit, "t").unwrap();
    let m = store.verify(&rep.id).unwrap();
    assert_eq!(m.bounds.max_total_bytes, 15);
    assert!(m.files[1].truncated);
}

#[test]
fn bad_paths_are_refused_and_unsealed_writers_clean_up() {
    let s = Scratch(tempfile::tempdir().unwrap());
    let store = EvidenceStore::open(&s.0.path().join("ev")).unwrap();
    let mut w = store
        .writer(serde_json::Value::Null, Bounds::default())
        .unwrap();
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        MANIFEST,
        "a\0b",
    ] {
        assert!(
            matches!(w.add_file(bad, b"x"), Err(BundleError::BadPath(_))),
            "{bad:?}"
        );
    }
    w.add_file("ok", b"x").unwrap();
    assert!(matches!(
        w.add_file("ok", b"y"),
        Err(BundleError::Duplicate(_))
    ));
    drop(w);
    assert_eq!(
        fs::read_dir(store.root().join(".staging")).unwrap().count(),
        0
    );
}

#[test]
fn export_copies_and_verifies() {
    let (s, store, rep, _) = sealed();
    let out = store.export(&rep.id, &s.0.path().join("out")).unwrap();
    verify_bundle(&out).unwrap();
    store.remove(&rep.id).unwrap();
    assert!(matches!(
        store.verify(&rep.id),
        Err(BundleError::NotFound(_))
    ));
}
