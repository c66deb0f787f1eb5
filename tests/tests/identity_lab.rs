//! Attestation from real lab containers, through the real node agent binary: each pod's
//! sidecar gets its own SPIFFE ID, a container cannot obtain another's identity, and a process
//! in a container the agent does not know is refused.

use brainbox_lab::{
    agent::Agent,
    docker::Container,
    images,
    pod::{Pod, PodSpec, HARDENING, WORKLOAD_API_MOUNT},
    require, unique,
};
use std::time::{Duration, Instant};

fn fetch(c: &Container, extra: &[&str]) -> (bool, String) {
    let mut cmd = vec!["/brainbox-sidecar", "svid-fetch"];
    cmd.extend_from_slice(extra);
    let out = c.exec(&cmd).unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn fetch_ok(c: &Container, extra: &[&str]) -> serde_json::Value {
    // The agent learns about a new container from Docker events; retry briefly.
    let start = Instant::now();
    loop {
        let (ok, text) = fetch(c, extra);
        if ok {
            let line = text
                .lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_default();
            return serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "svid-fetch kept failing: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn lab_pods_get_their_own_identity_and_strangers_are_refused() {
    require::lab();
    let mut agent = Agent::start(&[]).unwrap();
    let dir = agent.workload_api_dir();
    let (na, nb) = (unique("id-a"), unique("id-b"));
    let a = Pod::start(&PodSpec {
        workload_api_dir: Some(dir.clone()),
        ..PodSpec::new(&na)
    })
    .unwrap();
    let b = Pod::start(&PodSpec {
        workload_api_dir: Some(dir.clone()),
        ..PodSpec::new(&nb)
    })
    .unwrap();
    agent.wait_watching(&a.sidecar.id).unwrap();
    agent.wait_watching(&b.sidecar.id).unwrap();

    let id_a = format!("spiffe://brainbox.local/ns/default/brainbox/{na}");
    let id_b = format!("spiffe://brainbox.local/ns/default/brainbox/{nb}");
    let got_a = fetch_ok(&a.sidecar, &["--audience", "lab"]);
    let got_b = fetch_ok(&b.sidecar, &["--audience", "lab"]);
    assert_eq!(got_a["spiffe_id"], id_a.as_str(), "{got_a}");
    assert_eq!(got_a["jwt_spiffe_id"], id_a.as_str(), "{got_a}");
    assert_eq!(got_b["spiffe_id"], id_b.as_str(), "{got_b}");
    assert!(got_a["expires_in_s"].as_i64().unwrap() > 200, "{got_a}");

    // Pod A asking for pod B's identity is refused.
    let (ok, text) = fetch(&a.sidecar, &["--audience", "lab", "--spiffe-id", &id_b]);
    assert!(!ok, "pod A obtained pod B's JWT-SVID: {text}");
    assert!(
        text.contains("PermissionDenied") || text.contains("not entitled"),
        "{text}"
    );

    // The sidecar's own rotation loop (enabled by SPIFFE_ENDPOINT_SOCKET) installed the SVID.
    let start = Instant::now();
    loop {
        let logs = brainbox_lab::docker::docker_output(&["logs", &a.sidecar.id]).unwrap();
        let text = String::from_utf8_lossy(&logs.stdout).to_string()
            + &String::from_utf8_lossy(&logs.stderr);
        if text.contains("SVID installed") && text.contains(&id_a) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sidecar never installed its SVID:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A container with no brainbox labels (unknown to the agent) is refused.
    let image = images::sidecar_image().unwrap();
    let mount = format!("{}:{WORKLOAD_API_MOUNT}:ro", dir.display());
    let env = format!("SPIFFE_ENDPOINT_SOCKET=unix://{WORKLOAD_API_MOUNT}/agent.sock");
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend([
        "--volume",
        &mount,
        "--env",
        &env,
        "--env",
        "BRAINBOX_SVID__ENABLED=false",
        &image,
        "run",
    ]);
    let stranger = Container::run(&unique("id-stranger"), &args).unwrap();
    let (ok, text) = fetch(&stranger, &[]);
    assert!(!ok, "an unknown container obtained an identity: {text}");
    // The X.509 stream error of the `spiffe` client shows the server's message, not the code.
    assert!(
        text.contains("PermissionDenied") || text.contains("no identity issued"),
        "{text}"
    );

    // The agent says why it refused (for the operator), without telling the caller.
    let refusals = agent
        .logs()
        .into_iter()
        .filter(|l| l["message"] == "workload attestation refused")
        .count();
    assert!(refusals >= 1, "the agent logged no refusal");
}

#[test]
fn a_revocation_pushed_over_nats_reaches_the_node_and_survives_a_restart() {
    require::lab();
    brainbox_alerts::testkit::require_nats_server();
    let nats = brainbox_alerts::testkit::NatsServer::start();
    let url = nats.url();
    // One Workload API folder for both agents: the pods keep their mount across the restart.
    let workload = tempfile::tempdir().unwrap();
    let socket = workload.path().join("agent.sock");
    let socket = socket.to_str().unwrap();
    let env = [
        ("BRAINBOX_ALERTS__ENABLED", "true"),
        ("BRAINBOX_ALERTS__NATS_URL", url.as_str()),
        ("BRAINBOX_IDENTITY__SOCKET", socket),
    ];
    let mut agent = Agent::start(&env).unwrap();
    let dir = workload.path().to_owned();
    let (na, nb) = (unique("rv-a"), unique("rv-b"));
    let a = Pod::start(&PodSpec {
        workload_api_dir: Some(dir.clone()),
        ..PodSpec::new(&na)
    })
    .unwrap();
    let b = Pod::start(&PodSpec {
        workload_api_dir: Some(dir.clone()),
        ..PodSpec::new(&nb)
    })
    .unwrap();
    agent.wait_watching(&a.sidecar.id).unwrap();
    agent.wait_watching(&b.sidecar.id).unwrap();
    let id_a = format!("spiffe://brainbox.local/ns/default/brainbox/{na}");
    fetch_ok(&a.sidecar, &["--audience", "lab"]);

    let out = std::process::Command::new(brainbox_lab::bin_path("brainboxctl"))
        .args(["identity", "revoke", "--spiffe-id", &id_a])
        .env("BRAINBOX_NATS_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let refused = |c: &Container| {
        let (ok, text) = fetch(c, &[]);
        !ok && text.contains("revoked")
    };
    while !refused(&a.sidecar) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(10),
            "pod A still gets its identity after the revocation"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "revocation visible to the workload {} ms after brainboxctl returned",
        revoked_at.elapsed().as_millis()
    );
    // Only A: B is untouched.
    fetch_ok(&b.sidecar, &[]);

    // A new agent (same node, same NATS) replays the stream: A stays revoked.
    drop(agent);
    let agent2 = Agent::start(&env).unwrap();
    let start = Instant::now();
    loop {
        // Until the new agent knows the pods, refusals say "no identity issued"; wait for the
        // answer that names the revocation.
        let (ok, text) = fetch(&a.sidecar, &[]);
        assert!(
            !ok,
            "pod A got an identity from the restarted agent: {text}"
        );
        if text.contains("revoked") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the restarted agent never applied the revocation: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    fetch_ok(&b.sidecar, &[]);
    assert!(agent2
        .logs()
        .iter()
        .any(|l| l["message"] == "identity revoked (pushed over NATS)"));
}
