//! A hostile agent cannot exhaust the proxy: a flood of 10,000 idle CONNECTs and a slowloris
//! attack leave the real sidecar binary's memory bounded and allowed traffic served.

mod support;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(addr: std::net::SocketAddr) {
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("sidecar did not start listening on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connect_flood_and_slowloris_leave_memory_bounded_and_traffic_served() {
    let up = http_upstream("plain").await;
    let dns = dns(&[("api.test", &["127.0.0.1"]), ("busy.test", &["127.0.0.1"])]).await;
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policies");
    std::fs::create_dir(&pol).unwrap();
    std::fs::write(
        pol.join("p.yaml"),
        format!(
            "kind: egress-policy\nname: t\nspiffe_ids: [\"{ID}\"]\nrules:\n\
             - host: api.test\n  ports: [{p}]\n  allow_private: true\n\
             - host: busy.test\n  ports: [{p}]\n  allow_private: true\n",
            p = up.port()
        ),
    )
    .unwrap();
    let port = free_port();
    let cfg = dir.path().join("sidecar.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"pod_name = "flood"
[log]
level = "warn"
[metrics]
listen = ""
[egress]
listen = "127.0.0.1:{port}"
spiffe_id = "{ID}"
policy_dir = "{pol}"
nameservers = ["{dns}"]
audit_log = "{audit}"
[egress.limits]
header_timeout_ms = 2000
client_hello_timeout_ms = 3000
max_connections = 4096
max_per_destination = 64
"#,
            pol = pol.display(),
            audit = dir.path().join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_brainbox-sidecar"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start brainbox-sidecar");
    let sidecar = Sidecar(child);
    let pid = sidecar.0.id();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr).await;
    let url = format!("http://api.test:{}/ok", up.port());
    assert_eq!(get(addr, &url).await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_kib = status_kib(pid, "VmRSS:");

    // 10,000 CONNECTs to one allowed destination, each then silent (no ClientHello).
    let mut flood = Vec::with_capacity(10_000);
    let connect_req = format!(
        "CONNECT busy.test:{p} HTTP/1.1\r\nHost: busy.test:{p}\r\n\r\n",
        p = up.port()
    );
    for _ in 0..20 {
        let mut set = JoinSet::new();
        for _ in 0..500 {
            let req = connect_req.clone();
            set.spawn(async move {
                let mut s = TcpStream::connect(addr).await.ok()?;
                let _ = s.write_all(req.as_bytes()).await;
                Some(s)
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                flood.push(s);
            }
        }
    }
    assert!(
        flood.len() >= 9_000,
        "opened only {} flood connections",
        flood.len()
    );
    // Allowed traffic is still served while the flood is open.
    let t0 = Instant::now();
    let r = get(addr, &url).await;
    assert_eq!(r.status, 200, "{r:?}");
    let served_in = t0.elapsed();
    let flood_kib = status_kib(pid, "VmRSS:");
    // How the flood was answered: most get `destination-busy` at once (per-destination cap),
    // the admitted ones are cut when the ClientHello does not come.
    let mut busy = 0;
    let mut set = JoinSet::new();
    for mut s in flood.drain(..) {
        set.spawn(async move {
            let mut b = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(8), s.read(&mut b))
                .await
                .ok()?
                .ok()?;
            Some(String::from_utf8_lossy(&b[..n]).contains("destination-busy"))
        });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(Some(true)) = r {
            busy += 1;
        }
    }
    assert!(
        busy > 5_000,
        "only {busy} flood connections were refused as destination-busy"
    );

    // Slowloris: 300 heads trickled one byte at a time are cut at the header timeout.
    let mut set = JoinSet::new();
    for _ in 0..300 {
        let u = url.clone();
        set.spawn(async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            let head = format!("GET {u} HTTP/1.1\r\nX-Slow: ");
            s.write_all(head.as_bytes()).await.ok()?;
            let t0 = Instant::now();
            let mut b = [0u8; 256];
            loop {
                if s.write_all(b"a").await.is_err() {
                    return Some(t0.elapsed());
                }
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
                    Ok(_) => return Some(t0.elapsed()),
                    Err(_) if t0.elapsed() > Duration::from_secs(10) => return None,
                    Err(_) => {}
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = get(addr, &url).await;
    assert_eq!(r.status, 200, "allowed traffic during slowloris: {r:?}");
    let mut cut = 0;
    while let Some(r) = set.join_next().await {
        if let Ok(Some(t)) = r {
            assert!(
                t < Duration::from_secs(4),
                "slowloris connection lived {t:?}"
            );
            cut += 1;
        }
    }
    assert_eq!(cut, 300, "every slowloris connection is cut");
    let hwm_kib = status_kib(pid, "VmHWM:");
    eprintln!(
        "egress limits: RSS idle {idle_kib} KiB, during 10k CONNECT flood {flood_kib} KiB, peak {hwm_kib} KiB; \
         allowed request during flood served in {served_in:?}; {busy} refused destination-busy"
    );
    assert!(hwm_kib < 64 * 1024, "peak RSS {hwm_kib} KiB is not bounded");
    assert_eq!(get(addr, &url).await.status, 200);
}
