//! Denial reports: ring buffer records → `net_deny` events (JSON), enriched with the container.
//! The kernel already rate-limits per cgroup; the count of suppressed denials travels with the
//! next event that gets through, and every denial is counted in the metrics.

use super::{policy::show_addr, Zones};
use crate::runtime::ContainerTable;
use brainbox_ebpf_common::{
    c_str,
    zones::{DenyEvent, DenyReason, Hook},
};
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Option<DenyEvent> {
    if bytes.len() < std::mem::size_of::<DenyEvent>() {
        return None;
    }
    let mut ev = DenyEvent::default();
    let r = |o: usize, n: usize| &bytes[o..o + n];
    let u32_at = |o: usize| u32::from_ne_bytes(r(o, 4).try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_ne_bytes(r(o, 8).try_into().unwrap_or([0; 8]));
    ev.ts_ns = u64_at(0);
    ev.cgroup_id = u64_at(8);
    ev.pid = u32_at(16);
    ev.policy = u32_at(20);
    ev.hook = u32_at(24);
    ev.reason = u32_at(28);
    ev.proto = u32_at(32);
    ev.family = u32_at(36);
    ev.port = u16::from_ne_bytes([bytes[40], bytes[41]]);
    ev.local_port = u16::from_ne_bytes([bytes[42], bytes[43]]);
    ev.suppressed = u32_at(44);
    ev.addr.copy_from_slice(r(48, 16));
    ev.comm.copy_from_slice(r(64, 16));
    Some(ev)
}

fn proto_name(p: u32) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        0 => "none".into(),
        n => n.to_string(),
    }
}

/// Builds the reported event.
pub fn build(ev: &DenyEvent, node: &str, zones: &Zones, table: &ContainerTable) -> Value {
    let container = table.get(ev.cgroup_id);
    let hook = Hook::from_u32(ev.hook).map_or("unknown", Hook::name);
    let reason = DenyReason::from_u32(ev.reason).map_or("unknown", DenyReason::name);
    let policy = zones.describe(ev.policy).map(
        |(_, zone, role)| json!({"zone": format!("{zone:?}").to_lowercase(), "role": role.name()}),
    );
    let rule = match policy.as_ref().and_then(|p| p["role"].as_str()) {
        Some("agent") => "in-pod: agent may reach only its sidecar's proxy port",
        _ => "default-deny: no zone flow allows this",
    };
    let comm = String::from_utf8_lossy(c_str(&ev.comm)).into_owned();
    let family = match ev.family {
        2 => "ipv4",
        10 => "ipv6",
        _ => "unknown",
    };
    json!({
        "type": "net_deny",
        "time": humantime::format_rfc3339_nanos(crate::events::wall_time(ev.ts_ns)).to_string(),
        "node": node,
        "container": container.as_deref(),
        "cgroup_id": ev.cgroup_id,
        "hook": hook,
        "reason": reason,
        "rule": rule,
        "policy": policy,
        "family": family,
        "proto": proto_name(ev.proto),
        "destination": {"addr": show_addr(ev.addr), "port": ev.port},
        "local_port": ev.local_port,
        "process": if ev.pid != 0 { json!({"pid": ev.pid, "comm": comm}) } else { Value::Null },
        "suppressed_before": ev.suppressed,
    })
}

/// Reads the ring buffer until `tx` closes.
pub async fn run(
    zones: Zones,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    table: ContainerTable,
    node: String,
    tx: tokio::sync::mpsc::Sender<Value>,
) -> std::io::Result<()> {
    // As in the sensor: `RingBuf` owns its fd and the `AsyncFd` owns the `RingBuf`.
    #[allow(deprecated)]
    let mut fd = AsyncFd::new(ring)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Some(ev) => batch.push(ev),
                None => tracing::warn!(len = item.len(), "short zone denial record"),
            }
        }
        guard.clear_ready();
        for ev in batch {
            let v = build(&ev, &node, &zones, &table);
            if tx.send(v).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_round_trips_the_layout() {
        let ev = DenyEvent {
            ts_ns: 1,
            cgroup_id: 2,
            pid: 3,
            policy: 4,
            hook: 5,
            reason: 2,
            proto: 6,
            family: 2,
            port: 80,
            local_port: 9,
            suppressed: 7,
            addr: [9; 16],
            comm: *b"nc\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        // The record as the kernel lays it out (#[repr(C)], no holes).
        let mut bytes = Vec::new();
        bytes.extend(ev.ts_ns.to_ne_bytes());
        bytes.extend(ev.cgroup_id.to_ne_bytes());
        for v in [ev.pid, ev.policy, ev.hook, ev.reason, ev.proto, ev.family] {
            bytes.extend(v.to_ne_bytes());
        }
        bytes.extend(ev.port.to_ne_bytes());
        bytes.extend(ev.local_port.to_ne_bytes());
        bytes.extend(ev.suppressed.to_ne_bytes());
        bytes.extend(ev.addr);
        bytes.extend(ev.comm);
        let d = decode(&bytes).unwrap();
        assert_eq!((d.pid, d.port, d.suppressed, d.local_port), (3, 80, 7, 9));
        assert_eq!(d.addr, [9; 16]);
        assert_eq!(c_str(&d.comm), b"nc");
        assert!(decode(&bytes[..79]).is_none());
    }
}
