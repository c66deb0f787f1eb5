//! `brainbox-attack`: what an attacker inside a brainbox does that BusyBox cannot, for the
//! detection tests. Built static (musl) and mounted read-only into lab containers. Each action
//! prints what happened and exits 0 whether or not the kernel allowed it: the tests check what
//! the node agent saw, not whether the attack worked.
//!
//! brainbox-attack memfd-exec         copy /bin/busybox into a memfd and execute it (fileless)
//! brainbox-attack packet-socket      open an AF_PACKET socket (needs CAP_NET_RAW; refused here)
//! brainbox-attack ptrace-attach      fork a child and PTRACE_ATTACH to it
//! brainbox-attack ptrace-traceme     PTRACE_TRACEME (the anti-debugging trick)
//! brainbox-attack log-socket PATH    copy standard input into the Unix socket PATH (what an
//!                                    agent's logger does; BusyBox's `nc` has no Unix sockets)

use nix::{
    sys::{
        memfd::{memfd_create, MemFdCreateFlag},
        ptrace,
        signal::{kill, Signal},
        socket::{socket, AddressFamily, SockFlag, SockType},
    },
    unistd::{fexecve, Pid},
};
use std::{ffi::CString, io::Write, os::fd::AsRawFd};

fn main() {
    let action = std::env::args().nth(1).unwrap_or_default();
    match action.as_str() {
        "memfd-exec" => memfd_exec(),
        "packet-socket" => {
            let r = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::empty(),
                None,
            );
            println!("AF_PACKET socket: {:?}", r.map(|fd| fd.as_raw_fd()));
        }
        "ptrace-attach" => ptrace_attach(),
        "ptrace-traceme" => println!("PTRACE_TRACEME: {:?}", ptrace::traceme()),
        "log-socket" => log_socket(&std::env::args().nth(2).unwrap_or_default()),
        _ => {
            eprintln!(
                "usage: brainbox-attack memfd-exec|packet-socket|ptrace-attach|ptrace-traceme|\
                 log-socket PATH"
            );
            std::process::exit(2);
        }
    }
}

fn log_socket(path: &str) {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(mut s) => {
            let r = std::io::copy(&mut std::io::stdin().lock(), &mut s);
            println!("log-socket {path}: {r:?}");
        }
        Err(e) => println!("log-socket {path}: connect: {e}"),
    }
}

fn memfd_exec() {
    let payload = std::fs::read("/bin/busybox").expect("reading /bin/busybox");
    let name = CString::new("payload").expect("no NUL");
    let fd = memfd_create(&name, MemFdCreateFlag::empty()).expect("memfd_create");
    let mut f = std::fs::File::from(fd);
    f.write_all(&payload).expect("writing the memfd");
    // argv[0] must name a BusyBox applet for the payload to run (and live long enough to be
    // inspected); the file itself is anonymous memory.
    let argv = [
        CString::new("sleep").expect("no NUL"),
        CString::new("sleep").expect("no NUL"),
        CString::new("2").expect("no NUL"),
    ];
    let env: [CString; 0] = [];
    // Only returns on failure.
    let err = fexecve(f.as_raw_fd(), &argv, &env).unwrap_err();
    println!("fexecve failed: {err}");
}

fn ptrace_attach() {
    // A child of ours, so the attach is allowed without CAP_SYS_PTRACE (and under Yama mode 1).
    let mut child = match std::process::Command::new("/bin/busybox")
        .args(["sleep", "5"])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            println!("spawning a child failed: {e}");
            return;
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    println!("PTRACE_ATTACH to {pid}: {:?}", ptrace::attach(pid));
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}
