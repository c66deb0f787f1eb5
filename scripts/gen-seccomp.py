#!/usr/bin/env python3
# Generates seccomp/*.json (run from seccomp/). The JSON files are the source of truth that
# runtimes load; this keeps the three allowlists consistent with each other.
import json
base_io = """read write readv writev pread64 pwrite64 preadv preadv2 pwritev pwritev2 lseek close close_range
open openat openat2 creat access faccessat faccessat2 stat lstat fstat newfstatat statx statfs fstatfs
getdents getdents64 readlink readlinkat getcwd chdir fchdir mkdir mkdirat rmdir rename renameat renameat2
unlink unlinkat link linkat symlink symlinkat chmod fchmod fchmodat umask truncate ftruncate fallocate
fsync fdatasync sync_file_range syncfs flock fadvise64 readahead utime utimes utimensat futimesat
dup dup2 dup3 fcntl ioctl pipe pipe2 sendfile splice tee copy_file_range
getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr
inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
poll ppoll select pselect6 epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
eventfd eventfd2 timerfd_create timerfd_settime timerfd_gettime signalfd signalfd4""".split()
base_mem = """brk mmap munmap mprotect mremap madvise msync mincore mlock mlock2 munlock mlockall munlockall membarrier
get_mempolicy""".split()
base_net = """socket socketpair bind listen accept accept4 connect getsockname getpeername getsockopt setsockopt
sendto recvfrom sendmsg recvmsg sendmmsg recvmmsg shutdown""".split()
base_proc = """exit exit_group getpid getppid gettid getuid geteuid getgid getegid getgroups getresuid getresgid
getpgid getpgrp getsid getrlimit prlimit64 getrusage getpriority sysinfo uname times
arch_prctl set_tid_address set_robust_list get_robust_list rseq futex futex_waitv prctl capget
sched_yield sched_getaffinity sched_setaffinity sched_getparam sched_getscheduler sched_getattr
sched_get_priority_max sched_get_priority_min sched_rr_get_interval getcpu getrandom
rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait rt_sigqueueinfo
rt_tgsigqueueinfo sigaltstack tgkill tkill pause restart_syscall
clock_gettime clock_getres clock_nanosleep nanosleep gettimeofday time alarm
getitimer setitimer timer_create timer_settime timer_gettime timer_getoverrun timer_delete""".split()
workload_extra = """execve execveat fork vfork wait4 waitid kill setpgid setsid setpriority setrlimit
setuid setgid setreuid setregid setresuid setresgid setfsuid setfsgid setgroups capset
chown fchown fchownat lchown mknod mknodat setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
memfd_create pidfd_open pidfd_send_signal
ioprio_get ioprio_set sched_setparam sched_setscheduler sched_setattr
shmget shmat shmdt shmctl semget semop semtimedop semctl msgget msgsnd msgrcv msgctl
mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr
io_setup io_destroy io_submit io_cancel io_getevents
landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp sync remap_file_pages""".split()
agent_extra = """execve wait4 waitid kill pidfd_open pidfd_send_signal setsid setpgid setrlimit capset
bpf perf_event_open setns process_vm_readv fchown fchownat chown lchown
setgroups setuid setgid setresuid setresgid seccomp""".split()
sidecar_extra = """execve capset setgroups setuid setgid setresuid setresgid seccomp""".split()

CLONE_NS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
def clone_rule():
    return {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "comment": "threads and processes, never new namespaces (CLONE_NEW* flags refused)"}
def clone3_rule():
    return {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
            "comment": "ENOSYS: its flags live in memory a filter cannot read, so libc falls back to clone(2), whose flags we check"}
def personality_rules():
    return [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": v, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
             "comment": "query and the harmless personas only (no READ_IMPLIES_EXEC, no ADDR_NO_RANDOMIZE)"} for v in (0, 8, 0x20000, 0x20008, 0xffffffff)]

def prof(name, extra, comment):
    allow = sorted(set(base_io + base_mem + base_net + base_proc + extra))
    assert len(allow) == len(set(allow))
    return {
        "comment": comment,
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": allow, "action": "SCMP_ACT_ALLOW"},
            clone_rule(), clone3_rule(), *personality_rules(),
        ],
    }

ps = {
 "brainbox-workload.json": prof("workload", workload_extra, "brainbox-guard: brainbox workloads (agent runtimes: sh, Python, Node). Allowlist; everything else fails with EPERM. No namespaces, mounts, ptrace, bpf, keyrings, userfaultfd, perf, modules, kexec, io_uring, clock setting, 32-bit ABI."),
 "sidecar.json": prof("sidecar", sidecar_extra, "brainbox-guard: brainbox-sidecar container. Networking, files, threads; no process management beyond the runtime's first execve. The sidecar installs a stricter filter of its own at start (no execve)."),
 "node-agent.json": prof("agent", agent_extra, "brainbox-guard: brainbox-node-agent container. Adds bpf, perf_event_open (eBPF tracepoints), setns and process_vm_readv (evidence capture), kill (response); still no mount, unshare, ptrace, keyctl, userfaultfd, modules or kexec."),
}
for f, p in ps.items():
    with open(f, "w") as fh:
        json.dump(p, fh, indent=2)
        fh.write("\n")
    print(f, len(p["syscalls"][0]["names"]))
