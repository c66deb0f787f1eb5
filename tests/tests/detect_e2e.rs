//! Detection end to end: attacks run from inside a real lab container, the eBPF sensor sees them,
//! and the unchanged upstream Falco stable rules fire, each alert attributed to the right
//! container and process. A benign workload fires nothing, and an exception added in a profile
//! file (never in the upstream file) suppresses a rule that otherwise fires.

use brainbox_lab::{
    agent::{alerts_of, default_rule_files, Agent},
    docker::Container,
    pod::{Pod, PodSpec, ATTACK_TOOL},
    require, unique,
};
use serde_json::Value;
use std::time::{Duration, Instant};

fn exec(c: &Container, cmd: &[&str]) {
    exec_opts(c, &[], cmd);
}

/// Runs an attack step. Attacks may fail (that is often the point); what they printed is kept
/// in the test log for when a rule does not fire.
fn exec_opts(c: &Container, opts: &[&str], cmd: &[&str]) {
    match c.exec_with(opts, cmd) {
        Ok(o) => eprintln!(
            "{cmd:?}: {} {} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("{cmd:?}: {e}"),
    }
}

/// (rule, expected process name) for each attack.
const EXPECTED: &[(&str, &str)] = &[
    ("Terminal shell in container", "sh"),
    ("Read sensitive file untrusted", "cat"),
    ("Find AWS Credentials", "grep"),
    ("Execution from /dev/shm", "sh"),
    ("Netcat Remote Code Execution in Container", "nc"),
    ("Clear Log Activities", "sh"),
    ("Search Private Keys or Passwords", "grep"),
    ("Remove Bulk Data from Disk", "shred"),
    ("Create Symlink Over Sensitive Files", "ln"),
    ("Create Hardlink Over Sensitive Files", "ln"),
    ("Packet socket created in container", "brainbox-attack"),
    ("PTRACE attached to process", "brainbox-attack"),
    ("PTRACE anti-debug attempt", "brainbox-attack"),
    ("Fileless execution via memfd_create", ""),
    ("Drop and execute new binary in container", "dropped"),
    (
        "Redirect STDOUT/STDIN to Network Connection in Container",
        "",
    ),
];

fn run_attacks(c: &Container) {
    // An interactive shell with a terminal (docker exec -t), alive long enough to be looked at.
    exec_opts(c, &["-t"], &["sh", "-c", "sleep 2"]);
    // Root inside the container reads password hashes.
    exec_opts(c, &["-u", "0"], &["cat", "/etc/shadow"]);
    exec(c, &["grep", "-r", "aws_secret_access_key", "/tmp"]);
    exec(c, &["sh", "-c", "/dev/shm/payload"]);
    exec(c, &["nc", "-w", "1", "127.0.0.1", "1", "-e", "/bin/sh"]);
    exec(
        c,
        &[
            "sh",
            "-c",
            "echo x > /var/log/app.log; : > /var/log/app.log",
        ],
    );
    exec(c, &["grep", "-r", "BEGIN RSA PRIVATE", "/tmp"]);
    exec(c, &["sh", "-c", "echo data > /tmp/data"]);
    exec(c, &["shred", "/tmp/data"]);
    exec(c, &["ln", "-s", "/etc/shadow", "/tmp/shadow-link"]);
    exec(c, &["ln", "/etc/shadow", "/tmp/shadow-hard"]);
    exec(c, &[ATTACK_TOOL, "packet-socket"]);
    exec(c, &[ATTACK_TOOL, "ptrace-attach"]);
    exec(c, &[ATTACK_TOOL, "ptrace-traceme"]);
    // From a shell, as an attacker would: upstream exempts memfd execs whose parent is runc.
    let fileless = format!("{ATTACK_TOOL} memfd-exec; true");
    exec(c, &["sh", "-c", &fileless]);
    // Drop a binary into the writable layer, then run it.
    exec_opts(
        c,
        &["-u", "0"],
        &["cp", "/bin/busybox", "/home/agent/dropped"],
    );
    exec(c, &["/home/agent/dropped", "true"]);
    // A reverse shell: a listener in the pod, then nc connects and hands the socket to sh.
    exec_opts(c, &["-d"], &["nc", "-l", "-p", "15001"]);
    std::thread::sleep(Duration::from_millis(300));
    exec_opts(c, &["-d"], &["nc", "127.0.0.1", "15001", "-e", "/bin/sh"]);
}

fn wait_for_rules(
    agent: &Agent,
    container_id: &str,
    rules: &[&str],
    timeout: Duration,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let alerts: Vec<Value> = alerts_of(&agent.events())
            .into_iter()
            .filter(|a| a["container"]["id"] == container_id)
            .cloned()
            .collect();
        let all = rules.iter().all(|r| alerts.iter().any(|a| a["rule"] == *r));
        if all || start.elapsed() > timeout {
            return alerts;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stable_falco_rules_fire_on_attacks_from_inside_a_container() {
    require::lab();
    let mut agent = Agent::start(&[]).unwrap();
    let name = unique("e2e-attack");
    let mut spec = PodSpec::new(&name);
    // Alert-only: the default profile would recycle the container at the first critical alert.
    spec.profile = Some("observe");
    spec.read_only = false;
    spec.attack_tool = true;
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();

    run_attacks(&pod.agent);
    let rules: Vec<&str> = EXPECTED.iter().map(|(r, _)| *r).collect();
    let alerts = wait_for_rules(&agent, &pod.agent.id, &rules, Duration::from_secs(90));

    let mut missing = vec![];
    for (rule, proc_name) in EXPECTED {
        match alerts.iter().find(|a| a["rule"] == *rule) {
            None => missing.push(*rule),
            Some(a) => {
                assert_eq!(a["container"]["name"], format!("{name}-agent"), "{a}");
                assert_eq!(a["container"]["pod"], name.as_str(), "{a}");
                if !proc_name.is_empty() {
                    let got = a["process"]["name"].as_str().unwrap_or_default();
                    // comm is cut at 15 bytes by the kernel.
                    let want = &proc_name[..proc_name.len().min(15)];
                    assert_eq!(got, want, "{rule}: wrong process: {a}");
                }
                assert!(!a["output"].as_str().unwrap_or_default().is_empty(), "{a}");
                assert!(a["id"].as_str().is_some_and(|id| id.len() == 32), "{a}");
            }
        }
    }
    let fired: std::collections::BTreeSet<&str> =
        alerts.iter().filter_map(|a| a["rule"].as_str()).collect();
    let seen: Vec<String> = agent
        .events()
        .iter()
        .filter(|e| e["type"] == "exec" && e["container"]["id"] == pod.agent.id.as_str())
        .map(|e| format!("{} {}", e["process"]["name"], e["process"]["argv"]))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} rules did not fire: {missing:?}\nfired: {fired:?}\nexecs seen in the container:\n{}",
        missing.len(),
        EXPECTED.len(),
        seen.join("\n")
    );
}

#[test]
fn benign_workload_fires_no_rule() {
    require::lab();
    let mut agent = Agent::start(&[]).unwrap();
    let name = unique("e2e-benign");
    let pod = Pod::start(&PodSpec::new(&name)).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    let script = "set -e; mkdir -p /tmp/work; cd /tmp/work; \
        for i in 1 2 3 4 5; do echo \"line $i\" >> notes.txt; done; \
        wc -l notes.txt; sort -r notes.txt > sorted.txt; cp sorted.txt copy.txt; mv copy.txt moved.txt; \
        rm moved.txt; ls -la; ps; date; id; env | wc -l; sha256sum notes.txt; gzip -k notes.txt; \
        tar -cf /tmp/work.tar notes.txt sorted.txt; echo done >> /var/log/app.log; \
        (nc -w 1 127.0.0.1 15001 </dev/null || true); (wget -q -T 1 -O /dev/null http://127.0.0.1:15001/ || true); \
        sleep 0.2";
    let out = pod.agent.exec(&["sh", "-c", script]).unwrap();
    assert!(
        out.status.success(),
        "benign script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A marker after the workload: once it is reported, everything before it was evaluated.
    let marker = unique("/tmp/benign-done");
    let _ = pod.agent.exec(&["cat", &marker]).unwrap();
    agent
        .wait_event(
            |e| e["process"]["argv"][1] == marker.as_str(),
            Duration::from_secs(90),
        )
        .unwrap();
    let events = agent.events();
    let fired: Vec<&Value> = alerts_of(&events)
        .into_iter()
        .filter(|a| a["container"]["pod"] == name.as_str())
        .collect();
    assert!(
        fired.is_empty(),
        "the benign workload raised alerts: {fired:#?}"
    );
}

#[test]
fn exception_in_a_profile_file_suppresses_a_firing_rule() {
    require::lab();
    let name = unique("e2e-except");
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("exceptions.yaml");
    // Our own file, loaded after the upstream one: the upstream file stays untouched.
    std::fs::write(
        &overrides,
        format!(
            "- rule: Create Symlink Over Sensitive Files\n  exceptions:\n    - name: lab_allowed_links\n      \
             fields: [container.name, evt.arg.linkpath]\n      comps: [=, startswith]\n      \
             values:\n        - [{name}-agent, /tmp/allowed-]\n  override:\n    exceptions: append\n"
        ),
    )
    .unwrap();
    let files = default_rule_files(&[&overrides]);
    let mut agent = Agent::start(&[("BRAINBOX_RULES__FILES", files.as_str())]).unwrap();
    let mut spec = PodSpec::new(&name);
    spec.profile = Some("observe");
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();

    // Excepted: a link whose path matches the exception.
    let _ = pod
        .agent
        .exec(&["ln", "-s", "/etc/shadow", "/tmp/allowed-link"])
        .unwrap();
    // Not excepted: same rule, other path; it must still fire.
    let _ = pod
        .agent
        .exec(&["ln", "-s", "/etc/shadow", "/tmp/other-link"])
        .unwrap();
    let alerts = wait_for_rules(
        &agent,
        &pod.agent.id,
        &["Create Symlink Over Sensitive Files"],
        Duration::from_secs(90),
    );
    let symlink_alerts: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"] == "Create Symlink Over Sensitive Files")
        .collect();
    assert_eq!(symlink_alerts.len(), 1, "{symlink_alerts:#?}");
    let out = symlink_alerts[0]["output"].as_str().unwrap();
    assert!(out.contains("/tmp/other-link"), "{out}");
    assert!(!out.contains("/tmp/allowed-link"), "{out}");
}

/// The last upstream stable rule, *Contact K8S API Server From Container*, compares
/// `fd.sip.name` with `kubernetes.default.svc.cluster.local`. The agent resolves the names rules
/// compare that field with (as Falco's DNS manager does); here the agent's own view of
/// `/etc/hosts` (a private mount namespace) points the name at 127.0.0.1, and a container
/// connects to its loopback, as a pod would connect to the API server's service address.
#[test]
fn contact_k8s_api_server_fires_through_the_rule_name_resolver() {
    require::lab();
    let mut agent =
        Agent::start_with_hosts(&[], Some("127.0.0.1 kubernetes.default.svc.cluster.local"))
            .unwrap();
    let name = unique("e2e-k8sapi");
    let mut spec = PodSpec::new(&name);
    spec.profile = Some("observe");
    let pod = Pod::start(&spec).unwrap();
    agent.wait_watching(&pod.agent.id).unwrap();
    agent
        .wait_log(
            |l| {
                l["message"] == "resolved the host names rules compare fd.sip.name/fd.cip.name with"
            },
            Duration::from_secs(30),
        )
        .unwrap();
    exec(&pod.agent, &["nc", "-w", "1", "127.0.0.1", "443"]);
    let rule = "Contact K8S API Server From Container";
    let alerts = wait_for_rules(&agent, &pod.agent.id, &[rule], Duration::from_secs(60));
    let a = alerts
        .iter()
        .find(|a| a["rule"] == rule)
        .unwrap_or_else(|| panic!("{rule} did not fire; alerts: {alerts:#?}"));
    assert_eq!(a["process"]["name"], "nc", "{a}");
    // A connection to another address is not the API server.
    let before = alerts.iter().filter(|a| a["rule"] == rule).count();
    exec(&pod.agent, &["nc", "-w", "1", "127.0.0.2", "443"]);
    std::thread::sleep(Duration::from_secs(2));
    let after = alerts_of(&agent.events())
        .into_iter()
        .filter(|a| a["rule"] == rule && a["container"]["id"] == pod.agent.id.as_str())
        .count();
    assert_eq!(before, after, "127.0.0.2 is not the API server");
}
