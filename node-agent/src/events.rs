//! Events as the agent reports them: one JSON object per line, enriched with the container and
//! process. This is the stable, documented output format (see docs/events.md).

use crate::{
    enrich::{Ancestor, Arg, Enriched, FdInfo},
    runtime::ContainerInfo,
};
use serde::Serialize;
use std::{
    io::Write,
    time::{Duration, SystemTime},
};

/// One reported event.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    /// `exec` or `syscall`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The syscall, as Falco's `evt.type` names it.
    pub evt_type: &'static str,
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
    /// Ancestors, parent first.
    pub lineage: &'a [Ancestor],
    /// Return value.
    pub ret: i64,
    /// Arguments by name.
    pub args: serde_json::Map<String, serde_json::Value>,
    /// The fd the event is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<&'a FdInfo>,
}

/// The process part of an event.
#[derive(Debug, Serialize)]
pub struct Process<'a> {
    /// pid in the host's pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent pid.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// `comm`.
    pub name: &'a str,
    /// argv[0].
    pub exe: &'a str,
    /// Full path of the executable.
    pub exepath: &'a str,
    /// The full argv (argv[0] first).
    pub argv: Vec<&'a str>,
    /// Controlling terminal number, 0 for none.
    pub tty: u32,
    /// Session id.
    pub sid: u32,
    /// Process group id.
    pub pgid: u32,
    /// Effective capability mask at exec, if known (Falco's `thread.cap_effective`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_effective: Option<u64>,
    /// Working directory, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<&'a str>,
    /// The executable was written into the container's writable layer.
    pub exe_upper_layer: bool,
    /// The executable is a memfd.
    pub exe_from_memfd: bool,
    /// True when argv or a path was longer than the sensor keeps.
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

/// Builds the reported form of an enriched event.
pub fn build<'a>(ev: &'a Enriched, node: &'a str) -> Event<'a> {
    let p = &ev.process;
    let mut argv = vec![p.exe.as_str()];
    argv.extend(p.args.iter().map(String::as_str));
    let args = ev
        .args
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Arg::Num(n) => serde_json::Value::from(*n),
                Arg::Str(s) => serde_json::Value::from(s.as_str()),
            };
            (k.to_string(), v)
        })
        .collect();
    Event {
        kind: if ev.is_exec() { "exec" } else { "syscall" },
        evt_type: ev.evt_type,
        time: humantime::format_rfc3339_nanos(wall_time(ev.hdr.ts_ns)).to_string(),
        node,
        container: ev.container.as_deref(),
        cgroup_id: ev.hdr.cgroup_id,
        process: Process {
            pid: ev.hdr.pid,
            tid: ev.hdr.tid,
            ppid: p.ppid,
            uid: ev.hdr.uid,
            gid: ev.hdr.gid,
            name: &p.name,
            exe: &p.exe,
            exepath: &p.exepath,
            argv,
            tty: p.tty,
            sid: p.sid,
            pgid: p.pgid,
            cap_effective: p.cap_effective,
            cwd: p.cwd.as_deref(),
            exe_upper_layer: p.exe_upper_layer,
            exe_from_memfd: p.exe_from_memfd,
            truncated: ev.truncated,
        },
        lineage: &ev.lineage[..],
        ret: ev.ret,
        args,
        fd: ev.fd.as_ref(),
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

    /// Writes one event or alert as a JSON line and flushes (they must not sit in a buffer).
    pub fn write<T: Serialize>(&mut self, ev: &T) -> std::io::Result<()> {
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
    fn wall_time_is_not_in_the_future() {
        let t = wall_time(0);
        assert!(t <= SystemTime::now());
    }
}
