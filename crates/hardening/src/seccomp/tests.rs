use super::*;

fn all() -> [(&'static str, OciProfile); 3] {
    [
        ("workload", OciProfile::from_json(WORKLOAD_PROFILE).unwrap()),
        ("sidecar", OciProfile::from_json(SIDECAR_PROFILE).unwrap()),
        (
            "node-agent",
            OciProfile::from_json(NODE_AGENT_PROFILE).unwrap(),
        ),
    ]
}

#[test]
fn every_shipped_profile_parses_and_compiles_within_the_bpf_limit() {
    for (name, p) in all() {
        assert_eq!(p.default_action().unwrap(), Action::Errno(1), "{name}");
        let progs = p.compile(&[]).unwrap();
        assert!(!progs.is_empty(), "{name}");
        for prog in &progs {
            // BPF_MAXINSNS for classic BPF seccomp programs.
            assert!(prog.len() <= 4096, "{name}: {} instructions", prog.len());
        }
    }
}

#[test]
fn workload_and_sidecar_profiles_refuse_the_dangerous_calls() {
    for (name, p) in all() {
        let allowed = p.allowed();
        let must_refuse: Vec<&str> = REFUSED_FOR_WORKLOADS
            .iter()
            .copied()
            // The agent loads eBPF, enters namespaces for evidence and reads other processes'
            // memory; everything else stays refused for it too.
            .filter(|c| {
                name != "node-agent"
                    || !["bpf", "perf_event_open", "setns", "process_vm_readv"].contains(c)
            })
            .collect();
        for c in must_refuse {
            assert!(!allowed.contains(c), "{name} allows {c}");
            assert!(syscall_number(c).is_some(), "{c} is not an x86_64 call");
        }
    }
}

#[test]
fn clone_is_allowed_only_without_namespace_flags_and_clone3_is_enosys() {
    for (name, p) in all() {
        let clone: Vec<_> = p
            .syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == "clone"))
            .collect();
        assert_eq!(clone.len(), 1, "{name}");
        assert_eq!(clone[0].args[0].op, "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone[0].args[0].value, 0x7E02_0000);
        let clone3 = p
            .syscalls
            .iter()
            .find(|r| r.names.iter().any(|n| n == "clone3"))
            .unwrap();
        assert_eq!(clone3.errno_ret, Some(libc::ENOSYS as u32), "{name}");
    }
}

#[test]
fn unknown_names_actions_and_keys_are_errors() {
    let bad_name = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
        "syscalls":[{"names":["reed"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert!(matches!(
        OciProfile::from_json(bad_name),
        Err(SeccompError::UnknownSyscall(n)) if n == "reed"
    ));
    let bad_action =
        r#"{"defaultAction":"SCMP_ACT_MAYBE","architectures":["SCMP_ARCH_X86_64"],"syscalls":[]}"#;
    assert!(matches!(
        OciProfile::from_json(bad_action),
        Err(SeccompError::UnknownAction(_))
    ));
    let bad_key =
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscals":[]}"#;
    assert!(OciProfile::from_json(bad_key).is_err());
    let arm =
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_AARCH64"],"syscalls":[]}"#;
    assert!(matches!(
        OciProfile::from_json(arm),
        Err(SeccompError::Architecture(_))
    ));
}

#[test]
fn removed_names_fall_to_the_default_action() {
    let p = OciProfile::from_json(SIDECAR_PROFILE).unwrap();
    let with = p.compile(&[]).unwrap();
    let without = p.compile(&["execve"]).unwrap();
    assert_eq!(with.len(), without.len());
    assert!(without.last().unwrap().len() < with.last().unwrap().len());
}

#[test]
fn the_syscall_table_is_sane() {
    assert_eq!(syscall_number("read"), Some(0));
    assert_eq!(syscall_number("execve"), Some(libc::SYS_execve));
    assert_eq!(syscall_number("bpf"), Some(libc::SYS_bpf));
    assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3));
    let mut names: Vec<_> = SYSCALLS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SYSCALLS.len());
}
