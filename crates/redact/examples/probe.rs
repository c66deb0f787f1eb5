use brainbox_redact::{corpus, Engine, FingerprintKey};
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
fn main() {
    let e = Engine::builder()
        .key(FingerprintKey::derive(b"x"))
        .build()
        .unwrap();
    let clean = corpus::clean_lines(42, 20_000);
    let bytes: usize = clean.iter().map(|l| l.len() + 1).sum();
    for _ in 0..2 {
        let t = cpu();
        let mut n = 0;
        for _ in 0..20 {
            for l in &clean {
                n += usize::from(e.redact_line(l.as_bytes()).changed());
            }
        }
        let d = cpu() - t;
        println!(
            "full {:.0} MiB/s changed {n}",
            20.0 * bytes as f64 / 1048576.0 / d
        );
    }
    let quiet: Vec<&String> = clean
        .iter()
        .filter(|l| e.debug_fired(l.as_bytes()).is_empty())
        .collect();
    let qb: usize = quiet.iter().map(|l| l.len() + 1).sum();
    let t = cpu();
    for _ in 0..50 {
        for l in &quiet {
            std::hint::black_box(e.redact_line(l.as_bytes()));
        }
    }
    println!(
        "non-firing lines ({}): full {:.0} MiB/s",
        quiet.len(),
        50.0 * qb as f64 / 1048576.0 / (cpu() - t)
    );
    for w in 0..3u8 {
        let t = cpu();
        for _ in 0..50 {
            for l in &clean {
                std::hint::black_box(e.debug_prefilter(l.as_bytes(), w));
            }
        }
        println!(
            "prefilter {w} all lines: {:.0} MiB/s",
            50.0 * bytes as f64 / 1048576.0 / (cpu() - t)
        );
    }
    let mut m = std::collections::HashMap::new();
    for l in &clean {
        for r in e.debug_fired(l.as_bytes()) {
            *m.entry(r.to_string()).or_insert(0) += 1;
        }
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.1));
    for (r, c) in v.iter().take(12) {
        println!("{r} {c}");
    }
}
