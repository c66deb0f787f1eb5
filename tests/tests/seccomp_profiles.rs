//! The OCI seccomp profiles in `seccomp/`: each one loads into libseccomp (every name resolves,
//! the filter exports as BPF), and in real containers a BusyBox and a Python workload run under
//! the workload profile while every refused system call fails with EPERM from inside.

use brainbox_hardening::seccomp::{OciProfile, REFUSED_FOR_WORKLOADS};
use brainbox_lab::{
    hardening::{parse_probe, python_image, run_once, seccomp_profile, syscall_probe},
    images,
    pod::HARDENING,
    require,
};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

const PROFILES: &[&str] = &["brainbox-workload.json", "sidecar.json", "node-agent.json"];

fn load(file: &str) -> OciProfile {
    let text = std::fs::read_to_string(seccomp_profile(file)).unwrap();
    OciProfile::from_json(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn action(a: &str, errno: Option<u32>) -> ScmpAction {
    match a {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.unwrap_or(1) as i32),
        other => panic!("action {other} not expected in our profiles"),
    }
}

fn op(o: &str, value: u64, value_two: u64) -> (ScmpCompareOp, u64) {
    match o {
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, value),
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, value),
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), value_two),
        other => panic!("operator {other}"),
    }
}

#[test]
fn every_profile_loads_into_libseccomp_and_exports_bpf() {
    for file in PROFILES {
        let p = load(file);
        let mut ctx =
            ScmpFilterContext::new(action(&p.default_action, p.default_errno_ret)).unwrap();
        if !ctx.is_arch_present(ScmpArch::X8664).unwrap() {
            ctx.add_arch(ScmpArch::X8664).unwrap();
        }
        let mut rules = 0;
        for r in &p.syscalls {
            for name in &r.names {
                let sc = ScmpSyscall::from_name(name)
                    .unwrap_or_else(|e| panic!("{file}: libseccomp does not know {name}: {e}"));
                // Our own table (used by the sidecar's self-filter) must agree with libseccomp.
                assert_eq!(
                    i64::from(sc.as_raw_syscall()),
                    brainbox_hardening::seccomp::syscall_number(name).unwrap(),
                    "{file}: {name}"
                );
                let act = action(&r.action, r.errno_ret);
                if r.args.is_empty() {
                    ctx.add_rule(act, sc).unwrap();
                } else {
                    let cmps: Vec<ScmpArgCompare> = r
                        .args
                        .iter()
                        .map(|a| {
                            let (o, d) = op(&a.op, a.value, a.value_two);
                            ScmpArgCompare::new(u32::from(a.index), o, d)
                        })
                        .collect();
                    ctx.add_rule_conditional(act, sc, &cmps)
                        .unwrap_or_else(|e| panic!("{file}: {name}: {e}"));
                }
                rules += 1;
            }
        }
        let out = tempfile::tempfile().unwrap();
        ctx.export_bpf(&out).unwrap();
        let bpf = {
            use std::io::{Read, Seek};
            let mut f = out;
            f.rewind().unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            v
        };
        // Each classic BPF instruction is 8 bytes; the kernel takes at most 4096.
        assert!(bpf.len() % 8 == 0 && !bpf.is_empty(), "{file}");
        assert!(
            bpf.len() / 8 <= 4096,
            "{file}: {} instructions",
            bpf.len() / 8
        );
        eprintln!("{file}: {rules} rules, {} BPF instructions", bpf.len() / 8);
    }
}

const PRIVILEGED_CAPS: &[&str] = &[
    "SYS_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "SYS_BOOT",
    "SYS_TIME",
    "SYS_PACCT",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "DAC_READ_SEARCH",
    "NET_ADMIN",
    // (Docker 20.10 does not know CAP_BPF or CAP_PERFMON; CAP_SYS_ADMIN covers both.)
];

fn probe_in(profile: Option<&str>, privileged: bool) -> brainbox_lab::hardening::ProbeResults {
    let probe = syscall_probe().unwrap();
    let image = images::agent_image().unwrap();
    let mount = format!("{}:/probe:ro", probe.display());
    let seccomp = match profile {
        Some(f) => format!("seccomp={}", seccomp_profile(f).display()),
        None => "seccomp=unconfined".to_string(),
    };
    let mut args: Vec<&str> = vec!["-v", &mount, "--security-opt", &seccomp];
    if privileged {
        // Root with every capability these calls check (not `ALL`: this host's own bounding
        // set lacks CAP_SYS_RESOURCE), so only seccomp can be what refuses.
        for cap in PRIVILEGED_CAPS {
            args.extend(["--cap-add", cap]);
        }
        args.extend(["--user", "0:0"]);
    } else {
        args.extend(HARDENING);
        args.extend(["--user", "1000:1000"]);
    }
    let (code, out, err) = run_once(&args, &image, &["/probe"]).unwrap();
    assert_eq!(
        code, 0,
        "probe under {profile:?} (privileged={privileged}) failed: {err}"
    );
    let r = parse_probe(&out);
    assert!(r.len() > 20, "probe printed too little: {out}");
    r
}

#[test]
fn refused_syscalls_fail_with_eperm_inside_containers() {
    require::docker();
    // Control: every capability, no filter. The probe's arguments are invalid on purpose, so
    // the kernel answers EFAULT/EINVAL/EBADF/ESRCH/ENOSYS: anything but EPERM.
    let control = probe_in(None, true);
    for call in [
        "mount",
        "unshare",
        "setns",
        "ptrace",
        "keyctl",
        "userfaultfd",
        "perf_event_open",
        "bpf",
    ] {
        assert_ne!(
            control[call], "EPERM",
            "control run: {call} already EPERM: {control:?}"
        );
    }
    for file in PROFILES {
        let agent_allows = ["bpf", "perf_event_open", "setns", "process_vm_readv"];
        for privileged in [true, false] {
            let got = probe_in(Some(file), privileged);
            for (call, errno) in &got {
                let allowed_here =
                    *file == "node-agent.json" && agent_allows.contains(&call.as_str());
                if allowed_here {
                    if privileged {
                        assert_eq!(
                            errno, &control[call],
                            "{file}: {call} should pass the filter"
                        );
                    }
                    continue;
                }
                assert!(
                    REFUSED_FOR_WORKLOADS.contains(&call.as_str()),
                    "probe calls {call}, which is not in the refused list"
                );
                assert_eq!(
                    errno, "EPERM",
                    "{file} (privileged={privileged}): {call} gave {errno}; all: {got:?}"
                );
            }
        }
        eprintln!(
            "{file}: every refused call failed with EPERM (also as root with every capability)"
        );
    }
}

#[test]
fn busybox_workload_runs_under_the_workload_profile() {
    require::docker();
    let image = images::agent_image().unwrap();
    let seccomp = format!(
        "seccomp={}",
        seccomp_profile("brainbox-workload.json").display()
    );
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend([
        "--security-opt",
        &seccomp,
        "--user",
        "1000:1000",
        "--tmpfs",
        "/tmp:size=16m",
    ]);
    let script = "set -e; ls / >/dev/null; cat /etc/passwd >/dev/null; id -u; \
        echo hello-from-busybox > /tmp/index.html; \
        httpd -p 127.0.0.1:8080 -h /tmp; \
        wget -q -O - http://127.0.0.1:8080/index.html; \
        echo a b c | awk '{print $2}'; sort /etc/passwd | head -1 >/dev/null; \
        ps >/dev/null; sleep 0.1; grep -c . /etc/passwd; \
        grep ^Seccomp: /proc/self/status";
    let (code, out, err) = run_once(&args, &image, &["sh", "-c", script]).unwrap();
    assert_eq!(
        code, 0,
        "busybox workload failed under the profile: {err}\n{out}"
    );
    assert!(out.contains("hello-from-busybox"), "{out}");
    assert!(out.contains("1000"), "{out}");
    assert!(out.contains("\nb\n"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn python_workload_runs_under_the_workload_profile() {
    require::docker();
    let image = python_image().unwrap();
    let seccomp = format!(
        "seccomp={}",
        seccomp_profile("brainbox-workload.json").display()
    );
    let mut args: Vec<&str> = HARDENING.to_vec();
    args.extend([
        "--security-opt",
        &seccomp,
        "--user",
        "1000:1000",
        "--tmpfs",
        "/tmp:size=16m",
    ]);
    // Threads, a loopback HTTP server and client, files, JSON, a child process, hashing.
    let script = r#"
import hashlib, http.server, json, os, subprocess, threading, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"ok": True}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
got = json.load(urllib.request.urlopen(f"http://127.0.0.1:{srv.server_port}/"))
with open("/tmp/x", "w") as f: f.write("data")
child = subprocess.run(["/usr/bin/python3", "-c", "print(6*7)"], capture_output=True, text=True)
print("python-ok", got["ok"], open("/tmp/x").read(), child.stdout.strip(), hashlib.sha256(b"x").hexdigest()[:8], os.getuid())
"#;
    let (code, out, err) = run_once(&args, &image, &["python3", "-c", script]).unwrap();
    assert_eq!(
        code, 0,
        "python workload failed under the profile: {err}\n{out}"
    );
    assert!(
        out.contains("python-ok True data 42 2d711642 1000"),
        "{out}"
    );
}
