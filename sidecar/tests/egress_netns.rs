//! The proxy reaches an upstream in a network namespace this test creates, by a literal IP that a
//! rule names (198.18.0.0/15 is special-purpose, so only naming it opens it). Needs root.

mod support;

use std::{
    io::{Read, Write},
    process::Command,
};
use support::*;
use tokio::io::AsyncWriteExt;

/// Deletes the namespace and the veth pair however the test ends.
struct Netns {
    name: String,
    host_if: String,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates a network namespace and a veth pair)"
    );
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "this test needs iproute2's `ip`"
    );
}

/// Serves keep-alive HTTP from inside the namespace on `addr:8080` (a thread that joined it).
fn serve_in_netns(ns: &str, addr: String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind((addr.as_str(), 8080)).expect("bind in netns");
        tx.send(()).unwrap();
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve_blocking(s));
        }
    });
    rx.recv().expect("netns server started");
}

fn serve_blocking(mut s: std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let line = String::from_utf8_lossy(&buf[..end])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        buf.drain(..end);
        let body = format!("netns {line}");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_ip_rule_reaches_an_upstream_in_a_netns() {
    require_root();
    let pid = std::process::id();
    let net = format!("198.19.{}", 20 + pid % 200);
    let ns = Netns {
        name: format!("bbeg-{pid}"),
        host_if: format!("bbeg{}h", pid % 100_000),
    };
    let ns_if = format!("bbeg{}n", pid % 100_000);
    let _ = Command::new("ip").args(["netns", "del", &ns.name]).status();
    ip(&["netns", "add", &ns.name]);
    ip(&[
        "link",
        "add",
        &ns.host_if,
        "type",
        "veth",
        "peer",
        "name",
        &ns_if,
    ]);
    ip(&["link", "set", &ns_if, "netns", &ns.name]);
    ip(&["addr", "add", &format!("{net}.1/30"), "dev", &ns.host_if]);
    ip(&["link", "set", &ns.host_if, "up"]);
    ip(&[
        "netns",
        "exec",
        &ns.name,
        "ip",
        "addr",
        "add",
        &format!("{net}.2/30"),
        "dev",
        &ns_if,
    ]);
    ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns_if, "up"]);
    ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
    serve_in_netns(&ns.name, format!("{net}.2"));

    let dns = dns(&[]).await;
    let p = proxy(
        &format!("  - host: {net}.2\n    ports: [8080]\n    tunnel: tcp\n"),
        dns,
        |_| {},
    )
    .await;
    let r = get(p.addr, &format!("http://{net}.2:8080/inside")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "netns GET /inside HTTP/1.1");
    // A raw TCP tunnel to the named IP (the rule says `tunnel: tcp`).
    let (mut s, r) = connect(p.addr, &format!("{net}.2:8080")).await;
    assert_eq!(r.status, 200);
    s.write_all(b"GET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(r.body, "netns GET /tunnelled HTTP/1.1");
    // The host side of the pair is not named by any rule.
    let r = get(p.addr, &format!("http://{net}.1:8080/")).await;
    assert_eq!(r.reason().as_deref(), Some("literal-ip-not-allowed"));
    drop(ns);
}
