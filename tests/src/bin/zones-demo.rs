//! `zones-demo`: a short, readable run of the zone lab for the demo (scripts/demo.d/50-zones.sh):
//! a brainbox pod, an orchestrator and an outside host; what the agent container and its sidecar
//! may and may not reach; one denial as the agent reports it. Cleans up after itself.

use anyhow::Result;
use brainbox_lab::zones::{Outside, ZoneLab, OUTSIDE, PROXY_PORT, RESOLVER};

fn main() -> Result<()> {
    let outside = Outside::start()?;
    let mut lab = ZoneLab::start()?;
    let (side, agent) = lab.pod("demo")?;
    let orch = lab.service("orch", "orchestrator", 8080, "orch")?;
    let proxy = PROXY_PORT.to_string();
    let rows: Vec<(&str, &brainbox_lab::zones::LabContainer, Vec<&str>)> = vec![
        (
            "agent   -> its sidecar's proxy 127.0.0.1:15001",
            &agent,
            vec!["tcp", "127.0.0.1", &proxy, "demo"],
        ),
        (
            "agent   -> outside 198.18.77.1:80 (raw TCP, no proxy)",
            &agent,
            vec!["tcp", OUTSIDE, "80", "demo"],
        ),
        (
            "agent   -> DNS 198.18.77.53:53 (sendto, no connect)",
            &agent,
            vec!["udp-sendto", RESOLVER, "53", "demo"],
        ),
        (
            "agent   -> ::ffff:198.18.77.1:80 (IPv4-mapped IPv6)",
            &agent,
            vec!["tcp", "::ffff:198.18.77.1", "80", "demo"],
        ),
        (
            "agent   -> ICMP echo via a ping socket",
            &agent,
            vec!["icmp-dgram", OUTSIDE, "demo"],
        ),
        (
            "agent   -> orchestrator:8080",
            &agent,
            vec!["tcp", &orch.ip, "8080", "demo"],
        ),
        (
            "sidecar -> outside 198.18.77.1:443",
            &side,
            vec!["tcp", OUTSIDE, "443", "demo"],
        ),
        (
            "sidecar -> outside 198.18.77.1:22",
            &side,
            vec!["tcp", OUTSIDE, "22", "demo"],
        ),
        (
            "sidecar -> orchestrator:8080",
            &side,
            vec!["tcp", &orch.ip, "8080", "demo"],
        ),
    ];
    println!(
        "zones enforced on {} containers (container start -> programs attached: {:?})",
        lab.attach_delays.len(),
        lab.attach_delays
    );
    for (what, c, args) in &rows {
        let (ok, out) = c.probe(args);
        let verdict = if ok {
            "\x1b[1;32mallowed\x1b[0m"
        } else {
            "\x1b[1;31mdenied \x1b[0m"
        };
        let detail = out.split_once(' ').map(|(_, r)| r).unwrap_or(&out);
        let detail = detail.split(" (os error").next().unwrap_or(detail);
        println!("  {verdict}  {what:<55} {detail}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    if let Some(d) = lab
        .denials()
        .into_iter()
        .find(|e| e["destination"]["port"] == 80)
    {
        println!("\none denial as the node agent reports it:\n{d}");
    }
    println!("\noutside host received: {:?}", outside.received());
    Ok(())
}
