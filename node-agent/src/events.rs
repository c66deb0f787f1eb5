//! Events as the agent reports them: one JSON object per line, enriched with the container and
//! process. This is the stable, documented output format (see docs/events.md).

use crate::{
    runtime::ContainerInfo,
    sensor::decode::{Exec, Header, SensorEvent},
};
use serde::Serialize;
use std::{
    io::Write,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// One reported event.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// Event type (`exec`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Wall-clock time of the event, RFC 3339.
    pub time: String,
    /// Node name.
    pub node: &'a str,
    /// The container, if the cgroup is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<&'a ContainerInfo>,
    /// The cgroup v2 id the kernel reported.
    pub cgroup_id: u64,
    /// The process.
    pub process: Process<'a>,
}

/// The process part of an event.
#[derive(Debug, Serialize)]
pub struct Process<'a> {
    /// pid in the host's pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent pid (from the kernel or, failing that, /proc).
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// The executed path as passed to execve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<&'a str>,
    /// argv.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<&'a [String]>,
    /// True when argv was longer than the sensor keeps or an entry was cut.
    pub truncated: bool,
}

/// Converts boot-time nanoseconds to wall-clock time.
pub fn wall_time(ts_ns: u64) -> SystemTime {
    let now_wall = SystemTime::now();
    let Ok(now_boot) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) else {
        return now_wall;
    };
    let now_boot_ns = now_boot.tv_sec() as u64 * 1_000_000_000 + now_boot.tv_nsec() as u64;
    let age = Duration::from_nanos(now_boot_ns.saturating_sub(ts_ns));
    now_wall.checked_sub(age).unwrap_or(now_wall)
}

/// The parent pid from `/proc/<pid>/stat`, 0 when the process is gone.
pub fn ppid_from_proc(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat_ppid(&s))
        .unwrap_or(0)
}

/// Field 4 of a `/proc/<pid>/stat` line; the command name may contain spaces and parentheses.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Builds the reported form of a sensor event.
pub fn build<'a>(
    ev: &'a SensorEvent,
    node: &'a str,
    container: Option<&'a Arc<ContainerInfo>>,
) -> Event<'a> {
    let hdr: &Header = ev.header();
    let ppid = if hdr.ppid != 0 {
        hdr.ppid
    } else {
        ppid_from_proc(hdr.pid)
    };
    let (exe, argv, truncated) = match ev {
        SensorEvent::Exec(Exec {
            filename,
            argv,
            args_truncated,
            cut,
            ..
        }) => (
            Some(filename.as_str()),
            Some(argv.as_slice()),
            *args_truncated || *cut,
        ),
    };
    Event {
        kind: ev.kind_name(),
        time: humantime::format_rfc3339_nanos(wall_time(hdr.ts_ns)).to_string(),
        node,
        container: container.map(|c| &**c),
        cgroup_id: hdr.cgroup_id,
        process: Process {
            pid: hdr.pid,
            tid: hdr.tid,
            ppid,
            uid: hdr.uid,
            gid: hdr.gid,
            exe,
            argv,
            truncated,
        },
    }
}

/// Where events are written.
pub struct Sink {
    out: Box<dyn Write + Send>,
}

impl Sink {
    /// `-` is stdout; anything else is a file opened for appending.
    pub fn open(spec: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if spec == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(spec)?,
            )
        };
        Ok(Self { out })
    }

    /// Writes any serializable event (e.g. `image_unapproved`) as a JSON line and flushes.
    pub fn write_json<T: Serialize>(&mut self, ev: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }

    /// Writes one event as a JSON line and flushes (events are rare and must not sit in a buffer).
    pub fn write(&mut self, ev: &Event<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ppid_handles_odd_comm() {
        assert_eq!(parse_stat_ppid("42 (a) b) (c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn wall_time_is_not_in_the_future() {
        let t = wall_time(0);
        assert!(t <= SystemTime::now());
    }
}
