//! Recall and false positives on the generated, labeled corpus. Goals from the issue:
//! ≥ 99% recall (per kind) and ≤ 0.1% of clean lines changed. The table goes to docs/redaction.md.

use brainbox_redact::{corpus, Engine, FingerprintKey};

#[test]
fn corpus_recall_and_false_positives() {
    let e = Engine::builder()
        .key(FingerprintKey::derive(b"corpus"))
        .build()
        .unwrap();
    let rep = corpus::evaluate(&e, 2026, 100, 50_000);
    println!("{}", rep.to_markdown());
    for l in &rep.leaks {
        println!("LEAK {l}");
    }
    for l in &rep.false_positives {
        println!("FP {l}");
    }
    assert!(
        rep.min_kind_recall() >= 0.99,
        "lowest per-kind recall {:.4}",
        rep.min_kind_recall()
    );
    assert!(
        rep.fp_rate() <= 0.001,
        "clean lines changed {:.4}%",
        100.0 * rep.fp_rate()
    );
}
