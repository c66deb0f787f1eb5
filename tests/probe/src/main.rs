//! zones-probe: one network action per run, from inside a lab container, reporting exactly what
//! the kernel said. Output is one line: `ok ...` (the action worked) or `err <errno> <text>`.
//! Exit code 0 means the action worked, 1 that it failed. Tests decide what a bypass is.
//!
//! This is the one place in the workspace with `unsafe`: raw socket, namespace and cgroup
//! syscalls that std does not offer. It runs only inside test containers.

use std::{
    ffi::CString,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        ["tcp", addr, port, marker] => tcp(addr, port, marker),
        ["udp-sendto", addr, port, marker] => udp(addr, port, marker, false),
        ["udp-connect", addr, port, marker] => udp(addr, port, marker, true),
        ["sendmmsg", addr, port, marker] => sendmmsg(addr, port, marker),
        ["tfo", addr, port, marker] => tfo(addr, port, marker),
        ["icmp-dgram", addr, marker] => icmp_dgram(addr, marker),
        ["raw", "icmp"] => sock(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
        ["raw", "ip"] => sock(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW),
        ["packet"] => sock(libc::AF_PACKET, libc::SOCK_RAW, 0x0300),
        ["bindtodevice", dev, addr, port, marker] => bindtodevice(dev, addr, port, marker),
        ["unshare-net", addr, port, marker] => unshare_net(addr, port, marker),
        ["setns", path] => setns(path),
        ["cgroup-move"] => cgroup_move(),
        ["serve", port] => serve(port),
        ["bench-connect", addr, port, secs] => bench_connect(addr, port, secs),
        ["bench-bulk", addr, port, secs] => bench_bulk(addr, port, secs),
        _ => Err("usage: zones-probe tcp|udp-sendto|udp-connect|sendmmsg|tfo ADDR PORT MARKER | icmp-dgram ADDR MARKER | raw icmp|ip | packet | bindtodevice DEV ADDR PORT MARKER | unshare-net ADDR PORT MARKER | setns PATH | cgroup-move".to_string()),
    };
    match r {
        Ok(m) => {
            println!("ok {m}");
            std::process::exit(0);
        }
        Err(e) => {
            println!("err {e}");
            std::process::exit(1);
        }
    }
}

fn os(e: std::io::Error) -> String {
    let code = e.raw_os_error().unwrap_or(0);
    let name = match code {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EROFS => "EROFS",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENOSYS => "ENOSYS",
        libc::EWOULDBLOCK => "EAGAIN",
        0 => "NONE",
        _ => "OTHER",
    };
    format!("{name} {e}")
}

fn addr(a: &str, p: &str) -> Result<SocketAddr, String> {
    let ip: IpAddr = a.parse().map_err(|_| format!("EINVAL bad address {a}"))?;
    let port: u16 = p.parse().map_err(|_| format!("EINVAL bad port {p}"))?;
    Ok(SocketAddr::new(ip, port))
}

fn tcp(a: &str, p: &str, marker: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(3)).map_err(os)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(os)?;
    s.write_all(format!("{marker}\n").as_bytes()).map_err(os)?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).map_err(os)?;
    Ok(format!(
        "connected, read {:?}",
        String::from_utf8_lossy(&buf[..n]).trim()
    ))
}

fn udp(a: &str, p: &str, marker: &str, connect: bool) -> Result<String, String> {
    let sa = addr(a, p)?;
    let bind: SocketAddr = if sa.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind).map_err(os)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(os)?;
    if connect {
        s.connect(sa).map_err(os)?;
        s.send(marker.as_bytes()).map_err(os)?;
    } else {
        s.send_to(marker.as_bytes(), sa).map_err(os)?;
    }
    let mut buf = [0u8; 256];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Ok(format!(
            "sent, reply from {from}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        // The datagram left; whether it arrived is for the receiver to say.
        Err(e) => Ok(format!("sent, no reply ({})", os(e))),
    }
}

fn last_err() -> String {
    os(std::io::Error::last_os_error())
}

fn sockaddr(sa: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is a valid value; we fill the matching variant.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above.
            unsafe { std::ptr::write(&mut st as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

fn family(sa: &SocketAddr) -> i32 {
    if sa.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

fn sendmmsg(a: &str, p: &str, marker: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let (mut st, len) = sockaddr(&sa);
    // SAFETY: plain syscalls on a socket we own, with buffers that outlive them.
    unsafe {
        let fd = libc::socket(family(&sa), libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(last_err());
        }
        let mut iov = libc::iovec {
            iov_base: marker.as_ptr() as *mut _,
            iov_len: marker.len(),
        };
        let mut msg: libc::mmsghdr = std::mem::zeroed();
        msg.msg_hdr.msg_name = &mut st as *mut _ as *mut _;
        msg.msg_hdr.msg_namelen = len;
        msg.msg_hdr.msg_iov = &mut iov;
        msg.msg_hdr.msg_iovlen = 1;
        let n = libc::sendmmsg(fd, &mut msg, 1, 0);
        if n < 0 {
            return Err(last_err());
        }
        Ok(format!("sendmmsg sent {n}"))
    }
}

fn tfo(a: &str, p: &str, marker: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let (st, len) = sockaddr(&sa);
    // SAFETY: as above.
    unsafe {
        let fd = libc::socket(family(&sa), libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(last_err());
        }
        let n = libc::sendto(
            fd,
            marker.as_ptr() as *const _,
            marker.len(),
            libc::MSG_FASTOPEN,
            &st as *const _ as *const libc::sockaddr,
            len,
        );
        if n < 0 {
            return Err(last_err());
        }
        // Give the handshake a moment, then see whether it completed.
        std::thread::sleep(Duration::from_millis(500));
        let mut buf = [0u8; 64];
        let r = libc::recv(
            fd,
            buf.as_mut_ptr() as *mut _,
            buf.len(),
            libc::MSG_DONTWAIT,
        );
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(format!("tfo sendto accepted {n} bytes, connection pending"));
            }
            return Err(os(e));
        }
        Ok(format!("tfo connected, read {r} bytes"))
    }
}

fn icmp_dgram(a: &str, marker: &str) -> Result<String, String> {
    let ip: IpAddr = a.parse().map_err(|_| "EINVAL bad address".to_string())?;
    let sa = SocketAddr::new(ip, 0);
    let (st, len) = sockaddr(&sa);
    let (fam, proto, ty) = if ip.is_ipv4() {
        (libc::AF_INET, libc::IPPROTO_ICMP, 8u8)
    } else {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8)
    };
    let mut pkt = vec![ty, 0, 0, 0, 0, 1, 0, 1];
    pkt.extend_from_slice(marker.as_bytes());
    // SAFETY: as above.
    unsafe {
        let fd = libc::socket(fam, libc::SOCK_DGRAM, proto);
        if fd < 0 {
            return Err(last_err());
        }
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const _,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let n = libc::sendto(
            fd,
            pkt.as_ptr() as *const _,
            pkt.len(),
            0,
            &st as *const _ as *const libc::sockaddr,
            len,
        );
        if n < 0 {
            return Err(last_err());
        }
        let mut buf = [0u8; 512];
        let r = libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0);
        if r < 0 {
            return Err(format!("no echo reply: {}", last_err()));
        }
        Ok(format!("echo reply {r} bytes"))
    }
}

fn sock(fam: i32, ty: i32, proto: i32) -> Result<String, String> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(fam, ty, proto) };
    if fd < 0 {
        return Err(last_err());
    }
    Ok(format!("socket {fd} created"))
}

fn bindtodevice(dev: &str, a: &str, p: &str, marker: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let (st, len) = sockaddr(&sa);
    let name = CString::new(dev).map_err(|_| "EINVAL".to_string())?;
    // SAFETY: as above.
    unsafe {
        let fd = libc::socket(family(&sa), libc::SOCK_STREAM, 0);
        if fd < 0 {
            return Err(last_err());
        }
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr() as *const _,
            dev.len() as u32 + 1,
        ) < 0
        {
            return Err(format!("SO_BINDTODEVICE: {}", last_err()));
        }
        if libc::connect(fd, &st as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(last_err());
        }
        libc::send(fd, marker.as_ptr() as *const _, marker.len(), 0);
        Ok("connected".into())
    }
}

fn unshare_net(a: &str, p: &str, marker: &str) -> Result<String, String> {
    // SAFETY: unshare(2) affects only this process.
    let r = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(format!("unshare: {}", last_err()));
    }
    // If it worked, a connection from the new namespace is the bypass attempt.
    tcp(a, p, marker).map(|m| format!("after unshare: {m}"))
}

fn setns(path: &str) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open: {}", os(e)))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on an fd we opened.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(format!("setns: {}", last_err()));
    }
    Ok("joined".into())
}

fn cgroup_move() -> Result<String, String> {
    let pid = std::process::id().to_string();
    // Inside the container's cgroup namespace its own cgroup is the root; try a new child and
    // the root itself.
    let mut errs = Vec::new();
    match std::fs::create_dir("/sys/fs/cgroup/escape") {
        Ok(()) => {
            if std::fs::write("/sys/fs/cgroup/escape/cgroup.procs", &pid).is_ok() {
                return Ok("moved into a new child cgroup".into());
            }
        }
        Err(e) => errs.push(format!("mkdir: {}", os(e))),
    }
    for p in [
        "/sys/fs/cgroup/cgroup.procs",
        "/sys/fs/cgroup/unified/cgroup.procs",
    ] {
        match std::fs::write(p, &pid) {
            Ok(()) => return Ok(format!("wrote own pid to {p}")),
            Err(e) => errs.push(format!("{p}: {}", os(e))),
        }
    }
    Err(errs.join("; "))
}

/// A sink server for benchmarks: accepts forever, reads each connection to EOF.
fn serve(p: &str) -> Result<String, String> {
    let port: u16 = p.parse().map_err(|_| "EINVAL bad port".to_string())?;
    let l = std::net::TcpListener::bind(("0.0.0.0", port)).map_err(os)?;
    // A few threads accept and drain connections inline, with one buffer each: a thread (and a
    // 256 KiB buffer) spawned per connection made accept slower than the connect benchmark's
    // client, the accept queue overflowed, and dropped SYNs cost whole 1 s retransmits.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let l = l.try_clone().map_err(os)?;
            Ok(std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let Ok((mut s, _)) = l.accept() else { continue };
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
            }))
        })
        .collect::<Result<_, String>>()?;
    for w in workers {
        let _ = w.join();
    }
    Ok("served".into())
}

fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .map(Duration::from_secs_f64)
        .map_err(|_| "EINVAL bad duration".to_string())
}

/// Connections per second (connect, then close with RST so no TIME_WAIT piles up).
fn bench_connect(a: &str, p: &str, d: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let d = secs(d)?;
    let start = std::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        let s = TcpStream::connect(sa).map_err(os)?;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt on a socket we own with a correctly sized value.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const _ as *const _,
                std::mem::size_of::<libc::linger>() as u32,
            );
        }
        drop(s);
        n += 1;
    }
    Ok(format!(
        "{:.1} conns/s",
        n as f64 / start.elapsed().as_secs_f64()
    ))
}

/// Bytes per second over one connection.
fn bench_bulk(a: &str, p: &str, d: &str) -> Result<String, String> {
    let sa = addr(a, p)?;
    let d = secs(d)?;
    let mut s = TcpStream::connect(sa).map_err(os)?;
    let buf = vec![0x5au8; 128 * 1024];
    let start = std::time::Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < d {
        s.write_all(&buf).map_err(os)?;
        bytes += buf.len() as u64;
    }
    Ok(format!(
        "{:.1} bytes/s",
        bytes as f64 / start.elapsed().as_secs_f64()
    ))
}
