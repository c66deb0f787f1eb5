//! Best-effort reads of `/proc/<pid>/...` for what the kernel side does not send. Each returns
//! `None` when the process is already gone: callers treat that as "unknown", never as an error.

use std::path::Path;

/// Fields of `/proc/<pid>/stat` the process table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Parent pid.
    pub ppid: u32,
    /// Session id.
    pub sid: u32,
    /// Process group id.
    pub pgid: u32,
    /// Controlling terminal (`tty_nr`), 0 for none.
    pub tty: u32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses a `/proc/<pid>/stat` line; the command name may contain spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) ... starttime(19)
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        tty: f.get(4)?.parse::<i64>().ok()? as u32,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat`.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `/proc/<pid>/comm` without the newline.
pub fn comm(pid: u32) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(c.trim_end_matches('\n').to_owned())
}

/// `/proc/<pid>/cmdline` split into arguments.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// A symlink under `/proc/<pid>/` (`exe`, `cwd`, `fd/3`).
pub fn link(pid: u32, name: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/{name}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The effective capability mask from `/proc/<pid>/status`.
pub fn cap_effective(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_cap_eff(&s)
}

/// Parses `CapEff:` out of a status text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

/// What a socket inode is, from `/proc/<pid>/net/{tcp,tcp6,udp,udp6,unix,raw,raw6}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// `ipv4`, `ipv6` or `unix` (Falco's `fd.type` names).
    pub family: &'static str,
    /// `tcp`, `udp`, `raw` or empty for unix.
    pub l4proto: &'static str,
    /// Local address and port.
    pub local: Option<std::net::SocketAddr>,
    /// Remote address and port.
    pub remote: Option<std::net::SocketAddr>,
}

fn parse_hex_addr(s: &str, v6: bool) -> Option<std::net::SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = if v6 {
        if ip.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        // /proc prints the address as four host-order 32-bit words.
        for w in 0..4 {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).ok()?;
            bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(bytes).into()
    } else {
        let word = u32::from_str_radix(ip, 16).ok()?;
        std::net::Ipv4Addr::from(word.to_ne_bytes()).into()
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// Finds socket `inode` in one `/proc/net/*` table text.
pub fn find_in_net_table(
    text: &str,
    inode: u64,
    v6: bool,
) -> Option<(Option<std::net::SocketAddr>, Option<std::net::SocketAddr>)> {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 9 && f[9].parse::<u64>().ok() == Some(inode) {
            return Some((parse_hex_addr(f[1], v6), parse_hex_addr(f[2], v6)));
        }
    }
    None
}

/// Describes fd `fd` of process `pid` if it is a socket.
pub fn socket_of_fd(pid: u32, fd: i64) -> Option<SocketInfo> {
    let target = link(pid, &format!("fd/{fd}"))?;
    let inode: u64 = target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let base = Path::new("/proc").join(pid.to_string()).join("net");
    for (file, family, proto, v6) in [
        ("tcp", "ipv4", "tcp", false),
        ("tcp6", "ipv6", "tcp", true),
        ("udp", "ipv4", "udp", false),
        ("udp6", "ipv6", "udp", true),
        ("raw", "ipv4", "raw", false),
        ("raw6", "ipv6", "raw", true),
    ] {
        if let Ok(text) = std::fs::read_to_string(base.join(file)) {
            if let Some((local, remote)) = find_in_net_table(&text, inode, v6) {
                return Some(SocketInfo {
                    family,
                    l4proto: proto,
                    local,
                    remote,
                });
            }
        }
    }
    Some(SocketInfo {
        family: "unix",
        l4proto: "",
        local: None,
        remote: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
        // cutime cstime priority nice num_threads itrealvalue starttime
        let line = "42 (a) b) (c) S 7 40 41 34816 0 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.ppid, s.pgid, s.sid, s.tty, s.start_ticks),
            (7, 40, 41, 34816, 12345)
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 2").is_none());
    }

    #[test]
    fn own_process_reads() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(!comm(me).unwrap().is_empty());
        assert!(!cmdline(me).unwrap().is_empty());
        assert!(link(me, "exe").is_some());
        assert!(cap_effective(me).is_some());
        assert!(stat(u32::MAX).is_none());
    }

    #[test]
    fn net_table_lookup() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:3A99 0100007F:0050 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 20 4 30 10 -1\n";
        let (l, r) = find_in_net_table(text, 4242, false).unwrap();
        assert_eq!(l.unwrap().to_string(), "127.0.0.1:15001");
        assert_eq!(r.unwrap().to_string(), "127.0.0.1:80");
        assert!(find_in_net_table(text, 1, false).is_none());
    }

    #[test]
    fn own_socket_is_described() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        let info = socket_of_fd(std::process::id(), l.as_raw_fd() as i64).unwrap();
        assert_eq!(info.family, "ipv4");
        assert_eq!(info.l4proto, "tcp");
        assert_eq!(info.local, Some(l.local_addr().unwrap()));
    }

    #[test]
    fn cap_eff_parses() {
        assert_eq!(
            parse_cap_eff("Name:\tx\nCapEff:\t00000000a80425fb\n"),
            Some(0xa80425fb)
        );
        assert_eq!(parse_cap_eff("nothing"), None);
    }
}
