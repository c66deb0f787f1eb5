//! `brainboxctl` audit/evidence verification against tampering (exit code and message), and the
//! NATS commands against a private `nats-server -js`.

use brainbox_alerts::{
    testkit::{load_alert, NatsServer},
    AlertMetrics, Delivery, Priority, Publisher, PublisherConfig,
};
use brainbox_audit::{
    evidence::{remove_tree, Bounds},
    AuditLog, EvidenceStore, NewRecord,
};
use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brainboxctl"))
        .args(args)
        .env_remove("BRAINBOX_NATS_URL")
        .output()
        .expect("run brainboxctl")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Temp dir whose immutable evidence is unlocked before deletion, even when a test fails.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(self.0.path());
    }
}

fn audit_log(n: u64) -> (Scratch, PathBuf) {
    let s = Scratch(tempfile::tempdir().unwrap());
    let p = s.0.path().join("audit.log");
    let mut log = AuditLog::open(&p).unwrap();
    for i in 1..=n {
        log.append(NewRecord::new(
            "response.step",
            "node-agent",
            format!("container-{i}"),
            serde_json::json!({ "step": i }),
        ))
        .unwrap();
    }
    (s, p)
}

fn rewrite(p: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut l: Vec<String> = fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    f(&mut l);
    fs::write(p, l.join("\n") + "\n").unwrap();
}

fn expect_audit_failure(p: &Path, needle: &str) {
    let o = ctl(&["audit", "verify", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains(needle),
        "expected `{needle}` in: {}",
        stderr(&o)
    );
}

#[test]
fn audit_verify_passes_an_intact_log() {
    let (_s, p) = audit_log(5);
    let o = ctl(&["audit", "verify", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("intact, 5 records"));
    let o = ctl(&["--json", "audit", "verify", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn audit_verify_names_a_changed_record() {
    let (_s, p) = audit_log(5);
    rewrite(&p, |l| l[2] = l[2].replace("container-3", "container-X"));
    expect_audit_failure(&p, "line 3 (record 3): content does not match its hash");
}

#[test]
fn audit_verify_names_a_deleted_record() {
    let (_s, p) = audit_log(5);
    rewrite(&p, |l| {
        l.remove(3);
    });
    expect_audit_failure(&p, "expected record 4, found record 5");
}

#[test]
fn audit_verify_names_reordered_records() {
    let (_s, p) = audit_log(5);
    rewrite(&p, |l| l.swap(0, 1));
    expect_audit_failure(&p, "expected record 1, found record 2");
}

#[test]
fn audit_verify_names_a_truncated_record() {
    let (_s, p) = audit_log(5);
    let b = fs::read(&p).unwrap();
    fs::write(&p, &b[..b.len() - 20]).unwrap();
    expect_audit_failure(&p, "truncated inside record 5");
}

#[test]
fn audit_verify_names_records_cut_off_the_end() {
    let (_s, p) = audit_log(5);
    rewrite(&p, |l| l.truncate(3));
    expect_audit_failure(&p, "records 4 to 5 were cut off");
    let o = ctl(&["--json", "audit", "verify", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["seq"], 4);
}

struct Lab {
    s: Scratch,
    store: EvidenceStore,
    audit: PathBuf,
    id: String,
}

fn lab() -> Lab {
    let s = Scratch(tempfile::tempdir().unwrap());
    let store = EvidenceStore::open(&s.0.path().join("evidence")).unwrap();
    let audit = s.0.path().join("audit.log");
    let mut log = AuditLog::open(&audit).unwrap();
    let mut w = store
        .writer(
            serde_json::json!({"rule": "Shell in brainbox"}),
            Bounds::default(),
        )
        .unwrap();
    w.add_file("proc/tree.txt", b"1 init\n 42 sh -c curl\n")
        .unwrap();
    w.add_file("layer/changes.tar", &[7u8; 4096]).unwrap();
    let rep = w.seal(&mut log, "node-agent").unwrap();
    Lab {
        s,
        store,
        audit,
        id: rep.id,
    }
}

impl Lab {
    fn verify(&self) -> Output {
        ctl(&[
            "evidence",
            "verify",
            &self.id,
            "--store",
            self.store.root().to_str().unwrap(),
            "--audit",
            self.audit.to_str().unwrap(),
        ])
    }

    /// Lifts the protection like an attacker with root and CAP_LINUX_IMMUTABLE would.
    fn unlock(&self) -> PathBuf {
        let dir = self.store.root().join(&self.id);
        let st = Command::new("chattr")
            .args(["-R", "-i"])
            .arg(&dir)
            .status()
            .expect("chattr (e2fsprogs) is needed");
        assert!(st.success());
        for d in [dir.clone(), dir.join("proc"), dir.join("layer")] {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }
}

fn expect_evidence_failure(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(o));
    assert!(
        stderr(o).contains(needle),
        "expected `{needle}` in: {}",
        stderr(o)
    );
}

#[test]
fn evidence_commands_on_an_intact_bundle() {
    let l = lab();
    let root = l.store.root().to_str().unwrap().to_owned();
    let o = l.verify();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("the audit chain agrees"));
    let o = ctl(&["evidence", "list", "--store", &root]);
    assert!(stdout(&o).contains(&l.id));
    let o = ctl(&["--json", "evidence", "show", &l.id, "--store", &root]);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["files"].as_array().unwrap().len(), 2);
    assert_eq!(m["protection"]["immutable"], true);
    let out = l.s.0.path().join("export");
    let o = ctl(&[
        "evidence",
        "export",
        &l.id,
        out.to_str().unwrap(),
        "--store",
        &root,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join(&l.id).join("manifest.json").is_file());
}

#[test]
fn evidence_verify_names_a_changed_file() {
    let l = lab();
    let dir = l.unlock();
    let f = dir.join("proc/tree.txt");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&f, b"1 init\n 42 sh -c true\n").unwrap();
    expect_evidence_failure(&l.verify(), "proc/tree.txt: content changed");
}

#[test]
fn evidence_verify_names_a_deleted_file() {
    let l = lab();
    let dir = l.unlock();
    fs::remove_file(dir.join("layer/changes.tar")).unwrap();
    expect_evidence_failure(&l.verify(), "layer/changes.tar: missing");
}

#[test]
fn evidence_verify_names_a_truncated_file() {
    let l = lab();
    let dir = l.unlock();
    let f = dir.join("layer/changes.tar");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(100)
        .unwrap();
    expect_evidence_failure(
        &l.verify(),
        "layer/changes.tar: truncated (100 of 4096 bytes)",
    );
}

#[test]
fn evidence_verify_names_an_added_file() {
    let l = lab();
    let dir = l.unlock();
    fs::write(dir.join("proc/planted"), b"x").unwrap();
    expect_evidence_failure(&l.verify(), "proc/planted: extra file");
}

#[test]
fn evidence_verify_names_a_deleted_bundle_from_the_audit_chain() {
    let l = lab();
    let dir = l.unlock();
    remove_tree(&dir).unwrap();
    let o = ctl(&[
        "evidence",
        "verify",
        "--store",
        l.store.root().to_str().unwrap(),
        "--audit",
        l.audit.to_str().unwrap(),
    ]);
    expect_evidence_failure(
        &o,
        &format!("bundle {} sealed in audit record 1 is missing", l.id),
    );
}

#[test]
fn evidence_verify_names_a_bundle_the_agent_never_sealed() {
    let l = lab();
    // A forged but self-consistent bundle, sealed into some other chain.
    let other = l.s.0.path().join("other.log");
    let mut log = AuditLog::open(&other).unwrap();
    let mut w = l
        .store
        .writer(serde_json::json!({"forged": true}), Bounds::default())
        .unwrap();
    w.add_file("proc/tree.txt", b"nothing happened\n").unwrap();
    let forged = w.seal(&mut log, "attacker").unwrap();
    let o = ctl(&[
        "evidence",
        "verify",
        "--store",
        l.store.root().to_str().unwrap(),
        "--audit",
        l.audit.to_str().unwrap(),
    ]);
    expect_evidence_failure(
        &o,
        &format!("bundle {} is not in the audit chain", forged.id),
    );
}

#[test]
fn alerts_tail_shows_the_bundle_id_acks_and_filters() {
    let nats = NatsServer::start();
    let url = nats.url();
    let spool = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (p, task) = Publisher::start(
            PublisherConfig::new(&url, spool.path()),
            AlertMetrics::default(),
        )
        .await
        .unwrap();
        for i in 0..3 {
            let mut a = load_alert("node-a", "tail", i);
            if i == 1 {
                a.priority = Priority::Critical;
                a.evidence_id = Some("ab".repeat(32));
            }
            let d = p.publish(a).await.unwrap();
            assert!(matches!(d, Delivery::Published { .. }), "{d:?}");
        }
        let other = load_alert("node-b", "tail", 9);
        p.publish(other).await.unwrap();
        drop(p);
        task.join().await;
    });

    // Critical only, durable "crit": the warning alerts are skipped.
    let o = ctl(&[
        "--json",
        "alerts",
        "tail",
        "--nats",
        &url,
        "--priority",
        "critical",
        "--durable",
        "crit",
        "--idle-exit",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", stdout(&o));
    assert_eq!(lines[0]["alert"]["evidence_id"], "ab".repeat(32));

    // Node filter, human output, shows the bundle id.
    let o = ctl(&[
        "alerts",
        "tail",
        "--nats",
        &url,
        "--node",
        "node-a",
        "--durable",
        "ops",
        "--count",
        "3",
        "--idle-exit",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.matches("node=node-a").count(), 3, "{out}");
    assert!(
        out.contains(&format!("evidence={}", "ab".repeat(32))),
        "{out}"
    );
    assert!(!out.contains("node-b"));
    // Acked: the same durable has nothing more.
    let o = ctl(&[
        "alerts",
        "tail",
        "--nats",
        &url,
        "--node",
        "node-a",
        "--durable",
        "ops",
        "--idle-exit",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    // Asking an existing durable for another filter is refused, not silently ignored.
    let o = ctl(&[
        "alerts",
        "tail",
        "--nats",
        &url,
        "--node",
        "node-b",
        "--durable",
        "ops",
        "--idle-exit",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));

    // A test alert from the CLI goes through the same stream.
    let o = ctl(&[
        "--json",
        "alerts",
        "test",
        "--nats",
        &url,
        "--node",
        "node-t",
        "--priority",
        "error",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["id"].clone();
    let o = ctl(&[
        "--json",
        "alerts",
        "tail",
        "--nats",
        &url,
        "--node",
        "node-t",
        "--durable",
        "t",
        "--count",
        "1",
        "--idle-exit",
        "10",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["alert"]["id"], id);
    assert_eq!(v["alert"]["rule"], "brainboxctl test alert");

    // Operator acknowledgement and check-in round trip.
    let o = ctl(&[
        "--json",
        "alerts",
        "ack",
        "abc123",
        "--nats",
        &url,
        "--operator",
        "alice",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ctl(&["checkin", "--nats", &url, "--operator", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ctl(&["--json", "safe-mode", "status", "--nats", &url]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["last_checkin"]["operator"], "alice");
    drop(nats);
    // NATS gone: "unavailable", not a hang or a crash.
    let o = ctl(&["checkin", "--nats", &url, "--connect-timeout", "2"]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
}

fn status(url: &str) -> serde_json::Value {
    let o = ctl(&["--json", "safe-mode", "status", "--nats", url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn wait_status(url: &str, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let v = status(url);
        if f(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn dead_man_from_a_test_profile_enters_safe_mode_and_brainboxctl_checkin_lifts_it() {
    // A test profile with a short dead-man interval.
    let profile = brainbox_profile::Profile::from_yaml(
        "name: lab-test\nzone: untrusted\nsafety:\n  checkin_interval_secs: 2\n  action: close_egress\n  lift: checkin\n",
        Path::new("profiles/test/lab-test.yaml"),
    )
    .unwrap();
    let policy = profile.safety.clone().expect("safety section");
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let frozen = brainbox_alerts::testkit::RecordingActuator::default();
    let task = rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let cp = brainbox_alerts::control::ControlPlane::from_client(client.clone());
        let (_state, task) = brainbox_alerts::monitor::spawn(
            brainbox_alerts::monitor::MonitorConfig {
                node: "lab-node".into(),
                policy,
                tick: std::time::Duration::from_millis(200),
            },
            cp,
            client,
            None,
            frozen.clone(),
        );
        // Boxed in an Option: returning a bare JoinHandle from an async block reads like a
        // forgotten `.await`.
        Some(task)
    });
    let node = |v: &serde_json::Value| -> Option<serde_json::Value> {
        v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == "lab-node")
            .cloned()
    };
    // Published as normal first, then the missed check-in puts the node into safe mode.
    wait_status(&url, "safe mode", |v| {
        node(v).is_some_and(|n| n["safe_mode"] == true && n["reasons"][0] == "dead_man")
    });
    assert_eq!(frozen.events(), ["enter close_egress dead_man"]);
    let o = ctl(&["checkin", "--nats", &url, "--operator", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = wait_status(&url, "lifted", |v| {
        node(v).is_some_and(|n| n["safe_mode"] == false)
    });
    assert_eq!(v["last_checkin"]["operator"], "alice");
    assert_eq!(frozen.events(), ["enter close_egress dead_man", "leave"]);
    // The operator can also force it, and the command shows in the status.
    let o = ctl(&[
        "safe-mode",
        "on",
        "--node",
        "lab-node",
        "--nats",
        &url,
        "--reason",
        "drill",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = wait_status(&url, "operator safe mode", |v| {
        node(v).is_some_and(|n| n["reasons"][0] == "operator")
    });
    assert_eq!(v["commands"]["command.lab-node"]["on"], true);
    let o = ctl(&["safe-mode", "status", "--nats", &url]);
    assert!(stdout(&o).contains("SAFE MODE"), "{}", stdout(&o));
    let o = ctl(&["safe-mode", "off", "--node", "lab-node", "--nats", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    wait_status(&url, "lifted again", |v| {
        node(v).is_some_and(|n| n["safe_mode"] == false)
    });
    if let Some(t) = task {
        t.abort();
    }
    drop(rt);
}

/// A revocation every node would drop is refused before anything is published (no NATS needed:
/// the check runs first).
#[test]
fn identity_revoke_refuses_what_nodes_would_drop() {
    for (args, needle) in [
        (
            &["identity", "revoke", "--spiffe-id", "https://x/y"][..],
            "is not a SPIFFE ID",
        ),
        (
            &["identity", "revoke", "--serial", "zz:01"][..],
            "serial `zz:01` is not hex",
        ),
    ] {
        let o = ctl(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
}

/// `brainboxctl events FILE | head -1`: the reader goes away early; the CLI stops quietly by
/// SIGPIPE, as Unix tools do, instead of panicking about a broken pipe.
#[test]
fn a_closed_pipe_stops_the_cli_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let line = r#"{"type":"exec","time":"2026-11-26T01:00:00.000Z","container":{"name":"c","profile":"p"},"process":{"pid":1,"uid":0,"argv":["x"]}}"#;
    fs::write(&events, format!("{line}\n").repeat(50_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_brainboxctl"))
        .arg("events")
        .arg(&events)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here: the CLI's next writes hit a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(13),
        "{:?} {}",
        out.status,
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
