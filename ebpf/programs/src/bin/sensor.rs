//! brainbox-guard's kernel side: tracepoint programs that report what watched containers do.
//!
//! Two ways to attach, chosen by user space (`sensor.attach`):
//!
//! * `raw` (default): two raw tracepoints, `raw_syscalls:sys_enter`/`sys_exit`, that dispatch on
//!   the syscall number in BPF (as Falco's modern probe and Tetragon do). A syscall we do not
//!   trace costs a few compares; a traced one from an unwatched cgroup one more hash lookup.
//!   Syscalls other than exec are captured whole at exit, straight into the ring buffer.
//! * `tracepoints`: one `syscalls:sys_enter_*`/`sys_exit_*` perf-event tracepoint per syscall;
//!   the kernel builds a trace record for every enabled syscall before the program runs.
//!
//! Both put every task of the host on the syscall-tracing slow path while attached (see
//! docs/sensor.md: fentry/fexit trampolines would not, but this kernel refuses them).
//!
//! Filtering by cgroup happens first thing: a process whose cgroup v2 id is not in `WATCHED`
//! costs one hash lookup and nothing else. Events go to one ring buffer; every emit and every drop is
//! counted per kind in `STATS` so user space can export drops instead of hiding them.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use aya_ebpf::helpers::bpf_probe_read_user_buf;
use brainbox_ebpf_common::{
    sc_stat_index, stat_index, EventHeader, EventKind, ExecEvent, ExecFlags, ExitEvent, ForkEvent, Sc, Stat,
    SyscallEvent, SyscallFlags, ADDR_LEN, ARG_LEN, MAX_ARGS, PATH_LEN, STATS_LEN,
};

/// All events, one ring buffer (size set by user space at load time).
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// cgroup v2 id → watch flags. Only processes in these cgroups are reported.
#[map(name = "WATCHED")]
static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(16384, 0);

/// Emitted/dropped counters per event kind.
#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// execve in flight: filled at syscall entry, emitted at exit if the exec succeeded.
#[map(name = "PENDING_EXEC")]
static PENDING_EXEC: LruHashMap<u64, ExecEvent> = LruHashMap::with_max_entries(4096, 0);

/// Per-CPU scratch space: an ExecEvent is far larger than the 512-byte BPF stack.
#[map(name = "SCRATCH_EXEC")]
static SCRATCH_EXEC: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Syscalls in flight: arguments captured at entry, emitted at exit with the result.
#[map(name = "PENDING_SC")]
static PENDING_SC: LruHashMap<u64, SyscallEvent> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU scratch space for building a SyscallEvent.
#[map(name = "SCRATCH_SC")]
static SCRATCH_SC: PerCpuArray<SyscallEvent> = PerCpuArray::with_max_entries(1, 0);

/// Dropped events per cgroup v2 id: which container the ring was full for (a flood that blinds
/// the sensor comes from somewhere). LRU, so a churn of cgroups cannot fill it.
#[map(name = "DROPS_BY_CGROUP")]
static DROPS_BY_CGROUP: LruPerCpuHashMap<u64, u64> = LruPerCpuHashMap::with_max_entries(1024, 0);

#[inline(always)]
fn count(kind: EventKind, stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(stat_index(kind as u32, stat)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
    }
    if matches!(stat, Stat::Dropped) {
        count_drop_cgroup();
    }
}

#[inline(always)]
fn count_sc(sc: u32, stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(sc_stat_index(sc, stat)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
    }
    if matches!(stat, Stat::Dropped) {
        count_drop_cgroup();
    }
}

#[inline(always)]
fn count_drop_cgroup() {
    // SAFETY: helper without pointer arguments.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    match DROPS_BY_CGROUP.get_ptr_mut(cg) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU while we run.
        Some(p) => unsafe { *p += 1 },
        None => {
            let _ = DROPS_BY_CGROUP.insert(cg, 1u64, 0);
        }
    }
}

#[inline(always)]
fn watched() -> bool {
    // SAFETY: helper without pointer arguments.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is only read.
    unsafe { WATCHED.get(&cg) }.is_some()
}

#[inline(always)]
fn header(kind: EventKind) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    EventHeader {
        kind: kind as u32,
        // SAFETY: helpers without pointer arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        ppid: 0,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        _pad: 0,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    }
}

// Offsets in the syscalls:sys_enter_execve / execveat records (see the tracepoint's `format`).
const EXECVE_FILENAME: usize = 16;
const EXECVE_ARGV: usize = 24;
const EXECVEAT_FILENAME: usize = 24;
const EXECVEAT_ARGV: usize = 32;
const SYS_EXIT_RET: usize = 16;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    if watched() {
        // SAFETY: reading the tracepoint record at offsets taken from its format file.
        let filename: u64 = unsafe { ctx.read_at(EXECVE_FILENAME) }.unwrap_or(0);
        let argv: u64 = unsafe { ctx.read_at(EXECVE_ARGV) }.unwrap_or(0);
        exec_enter(filename, argv, 0, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    if watched() {
        // SAFETY: as above (execveat's fd is its first argument).
        let dirfd: u64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
        let filename: u64 = unsafe { ctx.read_at(EXECVEAT_FILENAME) }.unwrap_or(0);
        let argv: u64 = unsafe { ctx.read_at(EXECVEAT_ARGV) }.unwrap_or(0);
        exec_enter(filename, argv, dirfd as u32, ExecFlags::EXECVEAT);
    }
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    // SAFETY: reading the tracepoint record at the offset from its format file.
    exec_exit(unsafe { ctx.read_at(SYS_EXIT_RET) }.unwrap_or(-1));
    0
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    // SAFETY: as above.
    exec_exit(unsafe { ctx.read_at(SYS_EXIT_RET) }.unwrap_or(-1));
    0
}

#[inline(always)]
fn exec_enter(filename: u64, argv: u64, dirfd: u32, flags: u32) {
    let Some(ev) = SCRATCH_EXEC.get_ptr_mut(0) else {
        count(EventKind::Exec, Stat::Dropped);
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let ev = unsafe { &mut *ev };
    ev.hdr = header(EventKind::Exec);
    ev.ret = 0;
    ev.argc = 0;
    ev.flags = flags;
    ev.dirfd = dirfd;
    let filename = filename as *const u8;
    let argv = argv as *const *const u8;

    // SAFETY: user pointers are only read through the probe-read helpers.
    match unsafe { bpf_probe_read_user_str_bytes(filename, &mut ev.filename) } {
        Ok(s) if s.len() >= PATH_LEN - 1 => ev.flags |= ExecFlags::PATH_CUT,
        Ok(_) => {}
        Err(_) => ev.filename[0] = 0,
    }

    let mut i = 0usize;
    while i < MAX_ARGS {
        // SAFETY: as above; `argv` is a user array of user pointers.
        let p: *const u8 = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => break,
        };
        if p.is_null() {
            break;
        }
        match unsafe { bpf_probe_read_user_str_bytes(p, &mut ev.args[i]) } {
            Ok(s) => {
                if s.len() >= ARG_LEN - 1 {
                    ev.flags |= ExecFlags::ARG_CUT;
                }
            }
            Err(_) => ev.args[i][0] = 0,
        }
        i += 1;
        ev.argc = i as u32;
    }
    if i == MAX_ARGS {
        // SAFETY: as above.
        if let Ok(p) = unsafe { bpf_probe_read_user::<*const u8>(argv.wrapping_add(MAX_ARGS)) } {
            if !p.is_null() {
                ev.flags |= ExecFlags::ARGS_TRUNCATED;
            }
        }
    }

    let tid = bpf_get_current_pid_tgid();
    if PENDING_EXEC.insert(&tid, ev, 0).is_err() {
        count(EventKind::Exec, Stat::Dropped);
    }
}

#[inline(always)]
fn exec_exit(ret: i64) {
    let tid = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING_EXEC.get_ptr_mut(&tid) else {
        return;
    };
    if ret == 0 {
        // SAFETY: the map value stays valid until we remove it below.
        let ev = unsafe { &mut *ev };
        ev.ret = 0;
        if EVENTS.output::<ExecEvent>(&*ev, 0).is_ok() {
            count(EventKind::Exec, Stat::Emitted);
        } else {
            count(EventKind::Exec, Stat::Dropped);
        }
    }
    let _ = PENDING_EXEC.remove(&tid);
}

// ---- syscalls ------------------------------------------------------------------------------

/// No such argument.
const NONE: usize = 99;
/// Offset of syscall argument `i` in a `syscalls:sys_enter_*` record (each is 8 bytes).
const fn arg_off(i: usize) -> usize {
    16 + 8 * i
}

#[inline(always)]
fn read_path(ptr: u64, dst: &mut [u8; PATH_LEN]) -> bool {
    if ptr == 0 {
        dst[0] = 0;
        return false;
    }
    // SAFETY: user memory is only read through the probe-read helper.
    match unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, dst) } {
        Ok(s) => s.len() >= PATH_LEN - 1,
        Err(_) => {
            dst[0] = 0;
            false
        }
    }
}

#[inline(always)]
fn read_addr(ptr: u64, len: u64, ev: &mut SyscallEvent) {
    if ptr == 0 || len == 0 {
        return;
    }
    // A sockaddr_in is 16 bytes, sockaddr_in6 28; read what fits our slot.
    let want = if len >= ADDR_LEN as u64 { ADDR_LEN } else if len >= 28 { 28 } else { 16 };
    let ok = match want {
        ADDR_LEN => unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut ev.addr[..ADDR_LEN]) },
        28 => unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut ev.addr[..28]) },
        _ => unsafe { bpf_probe_read_user_buf(ptr as *const u8, &mut ev.addr[..16]) },
    };
    if ok.is_ok() {
        ev.addr_len = if (len as usize) < want { len as u32 } else { want as u32 };
        ev.flags |= SyscallFlags::HAS_ADDR;
    }
}

#[inline(always)]
fn sc_enter(sc: Sc, p1: usize, p2: usize, addr: usize, arg: impl Fn(usize) -> u64) {
    let Some(ev) = SCRATCH_SC.get_ptr_mut(0) else {
        count_sc(sc as u32, Stat::Dropped);
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program.
    let ev = unsafe { &mut *ev };
    fill_sc(ev, sc, p1, p2, addr, arg);
    let tid = bpf_get_current_pid_tgid();
    if PENDING_SC.insert(&tid, ev, 0).is_err() {
        count_sc(sc as u32, Stat::Dropped);
    }
}

/// Writes every field of a syscall event but `ret`: header, raw arguments, paths, address.
#[inline(always)]
fn fill_sc(ev: &mut SyscallEvent, sc: Sc, p1: usize, p2: usize, addr: usize, arg: impl Fn(usize) -> u64) {
    ev.hdr = header(EventKind::Syscall);
    ev.sc = sc as u32;
    ev.flags = 0;
    ev.ret = 0;
    ev.addr_len = 0;
    ev._pad = 0;
    let mut i = 0;
    while i < 6 {
        ev.args[i] = arg(i);
        i += 1;
    }
    // `p1`, `p2` and `addr` are argument indices (or NONE); `get` keeps the verifier sure of it.
    match ev.args.get(p1) {
        Some(&ptr) => {
            if read_path(ptr, &mut ev.path1) {
                ev.flags |= SyscallFlags::PATH1_CUT;
            }
        }
        None => ev.path1[0] = 0,
    }
    match ev.args.get(p2) {
        Some(&ptr) => {
            if read_path(ptr, &mut ev.path2) {
                ev.flags |= SyscallFlags::PATH2_CUT;
            }
        }
        None => ev.path2[0] = 0,
    }
    if let (Some(&ptr), Some(&len)) = (ev.args.get(addr), ev.args.get(addr.wrapping_add(1))) {
        read_addr(ptr, len, ev);
    }
    if matches!(sc, Sc::Openat2) {
        // struct open_how { u64 flags; u64 mode; u64 resolve; }: keep flags and mode.
        let how = ev.args[2];
        // SAFETY: as above.
        ev.args[2] = unsafe { bpf_probe_read_user::<u64>(how as *const u64) }.unwrap_or(0);
        ev.args[3] = unsafe { bpf_probe_read_user::<u64>((how + 8) as *const u64) }.unwrap_or(0);
    }
}

/// `raw` mode: the whole event at syscall exit, built in place in the ring buffer. The arguments
/// are still in the saved registers and the paths still in the caller's memory, so there is no
/// entry program, no in-flight map and no copy. (Like Falco's modern probe, paths are read after
/// the call: a racing thread could rewrite the buffer in between; the entry read had that window
/// too, only shorter.)
#[inline(always)]
fn sc_at_exit(sc: Sc, p1: usize, p2: usize, addr: usize, ret: i64, arg: impl Fn(usize) -> u64) {
    let Some(mut entry) = EVENTS.reserve::<SyscallEvent>(0) else {
        count_sc(sc as u32, Stat::Dropped);
        return;
    };
    // SAFETY: ring buffer memory reserved for us; `fill_sc` and the line below write every field
    // user space reads (paths and the address only up to their terminator / `addr_len`).
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_sc(ev, sc, p1, p2, addr, arg);
    ev.ret = ret;
    if (sc as u32 == Sc::Accept as u32 || sc as u32 == Sc::Accept4 as u32) && ret >= 0 {
        // The peer address was written by the call; its length is *args[2].
        let len = unsafe { bpf_probe_read_user::<u32>(ev.args[2] as *const u32) }.unwrap_or(0);
        let ptr = ev.args[1];
        read_addr(ptr, len as u64, ev);
    }
    entry.submit(0);
    count_sc(sc as u32, Stat::Emitted);
}

#[inline(always)]
fn sc_exit(ret: i64) {
    let tid = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING_SC.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the map value stays valid until we remove it below.
    let ev = unsafe { &mut *ev };
    ev.ret = ret;
    if (ev.sc == Sc::Accept as u32 || ev.sc == Sc::Accept4 as u32) && ev.ret >= 0 {
        // The peer address is written by the kernel during the call; its length is *args[2].
        let len = unsafe { bpf_probe_read_user::<u32>(ev.args[2] as *const u32) }.unwrap_or(0);
        let ptr = ev.args[1];
        read_addr(ptr, len as u64, ev);
    }
    if EVENTS.output::<SyscallEvent>(&*ev, 0).is_ok() {
        count_sc(ev.sc, Stat::Emitted);
    } else {
        count_sc(ev.sc, Stat::Dropped);
    }
    let _ = PENDING_SC.remove(&tid);
}

/// Defines, for each traced syscall, the enter and exit tracepoint programs (`tracepoints`
/// mode) and its row in `classify` (`raw` mode): the x86_64 syscall number, which argument is the
/// first path, the second path, and the socket address (followed by its length).
macro_rules! syscalls {
    ($(($enter:ident, $exit:ident, $sc:expr, $nr:literal, $p1:expr, $p2:expr, $addr:expr)),* $(,)?) => {
        $(
            #[tracepoint]
            pub fn $enter(ctx: TracePointContext) -> u32 {
                if watched() {
                    // SAFETY: reading the tracepoint record at the offsets of its format file.
                    sc_enter($sc, $p1, $p2, $addr, |i| unsafe { ctx.read_at::<u64>(arg_off(i)) }.unwrap_or(0));
                }
                0
            }
            #[tracepoint]
            pub fn $exit(ctx: TracePointContext) -> u32 {
                // SAFETY: as above.
                sc_exit(unsafe { ctx.read_at::<i64>(SYS_EXIT_RET) }.unwrap_or(-1));
                0
            }
        )*

        /// What to capture for x86_64 syscall `nr`, or `None` for a syscall we do not trace.
        #[inline(always)]
        fn classify(nr: i64) -> Option<(Sc, usize, usize, usize)> {
            match nr {
                $($nr => Some(($sc, $p1, $p2, $addr)),)*
                _ => None,
            }
        }
    };
}

syscalls![
    (sys_enter_open, sys_exit_open, Sc::Open, 2, 0, NONE, NONE),
    (sys_enter_openat, sys_exit_openat, Sc::Openat, 257, 1, NONE, NONE),
    (sys_enter_openat2, sys_exit_openat2, Sc::Openat2, 437, 1, NONE, NONE),
    (sys_enter_connect, sys_exit_connect, Sc::Connect, 42, NONE, NONE, 1),
    (sys_enter_accept, sys_exit_accept, Sc::Accept, 43, NONE, NONE, NONE),
    (sys_enter_accept4, sys_exit_accept4, Sc::Accept4, 288, NONE, NONE, NONE),
    (sys_enter_socket, sys_exit_socket, Sc::Socket, 41, NONE, NONE, NONE),
    (sys_enter_ptrace, sys_exit_ptrace, Sc::Ptrace, 101, NONE, NONE, NONE),
    (sys_enter_mount, sys_exit_mount, Sc::Mount, 165, 0, 1, NONE),
    (sys_enter_umount, sys_exit_umount, Sc::Umount, 166, 0, NONE, NONE),
    (sys_enter_setns, sys_exit_setns, Sc::Setns, 308, NONE, NONE, NONE),
    (sys_enter_unshare, sys_exit_unshare, Sc::Unshare, 272, NONE, NONE, NONE),
    (sys_enter_bpf, sys_exit_bpf, Sc::Bpf, 321, NONE, NONE, NONE),
    (sys_enter_memfd_create, sys_exit_memfd_create, Sc::MemfdCreate, 319, 0, NONE, NONE),
    (sys_enter_chmod, sys_exit_chmod, Sc::Chmod, 90, 0, NONE, NONE),
    (sys_enter_fchmod, sys_exit_fchmod, Sc::Fchmod, 91, NONE, NONE, NONE),
    (sys_enter_fchmodat, sys_exit_fchmodat, Sc::Fchmodat, 268, 1, NONE, NONE),
    (sys_enter_fchmodat2, sys_exit_fchmodat2, Sc::Fchmodat2, 452, 1, NONE, NONE),
    (sys_enter_setuid, sys_exit_setuid, Sc::Setuid, 105, NONE, NONE, NONE),
    (sys_enter_setgid, sys_exit_setgid, Sc::Setgid, 106, NONE, NONE, NONE),
    (sys_enter_setreuid, sys_exit_setreuid, Sc::Setreuid, 113, NONE, NONE, NONE),
    (sys_enter_setresuid, sys_exit_setresuid, Sc::Setresuid, 117, NONE, NONE, NONE),
    (sys_enter_setregid, sys_exit_setregid, Sc::Setregid, 114, NONE, NONE, NONE),
    (sys_enter_setresgid, sys_exit_setresgid, Sc::Setresgid, 119, NONE, NONE, NONE),
    (sys_enter_unlink, sys_exit_unlink, Sc::Unlink, 87, 0, NONE, NONE),
    (sys_enter_unlinkat, sys_exit_unlinkat, Sc::Unlinkat, 263, 1, NONE, NONE),
    (sys_enter_rename, sys_exit_rename, Sc::Rename, 82, 0, 1, NONE),
    (sys_enter_renameat, sys_exit_renameat, Sc::Renameat, 264, 1, 3, NONE),
    (sys_enter_renameat2, sys_exit_renameat2, Sc::Renameat2, 316, 1, 3, NONE),
    (sys_enter_symlink, sys_exit_symlink, Sc::Symlink, 88, 0, 1, NONE),
    (sys_enter_symlinkat, sys_exit_symlinkat, Sc::Symlinkat, 266, 0, 2, NONE),
    (sys_enter_link, sys_exit_link, Sc::Link, 86, 0, 1, NONE),
    (sys_enter_linkat, sys_exit_linkat, Sc::Linkat, 265, 1, 3, NONE),
    (sys_enter_dup, sys_exit_dup, Sc::Dup, 32, NONE, NONE, NONE),
    (sys_enter_dup2, sys_exit_dup2, Sc::Dup2, 33, NONE, NONE, NONE),
    (sys_enter_dup3, sys_exit_dup3, Sc::Dup3, 292, NONE, NONE, NONE),
    (sys_enter_kill, sys_exit_kill, Sc::Kill, 62, NONE, NONE, NONE),
    (sys_enter_chdir, sys_exit_chdir, Sc::Chdir, 80, 0, NONE, NONE),
    (sys_enter_fchdir, sys_exit_fchdir, Sc::Fchdir, 81, NONE, NONE, NONE),
    (sys_enter_init_module, sys_exit_init_module, Sc::InitModule, 175, 2, NONE, NONE),
    (sys_enter_finit_module, sys_exit_finit_module, Sc::FinitModule, 313, 1, NONE, NONE),
];

// ---- raw syscall tracepoints (`raw` mode) ----------------------------------------------------

// x86_64 `struct pt_regs`, in u64 slots: the syscall arguments are in di, si, dx, r10, r8, r9.
const REG_ARGS: [usize; 6] = [14, 13, 12, 7, 9, 8];
const REG_ORIG_AX: usize = 15;
const NR_EXECVE: i64 = 59;
const NR_EXECVEAT: i64 = 322;
/// `thread_info.status` (first member of `task_struct`, x86_64, Linux >= 5.11) and its
/// `TS_COMPAT` bit: set while a task runs a 32-bit syscall, whose numbers are not the x86_64
/// ones. Those are skipped, as the `syscalls:*` tracepoints skip them.
const TASK_TI_STATUS: usize = 16;
const TS_COMPAT: u32 = 0x2;

#[inline(always)]
fn reg(regs: *const u64, slot: usize) -> u64 {
    // SAFETY: `regs` is the kernel's pt_regs of this syscall, read through the helper.
    unsafe { bpf_probe_read_kernel(regs.wrapping_add(slot)) }.unwrap_or(0)
}

#[inline(always)]
fn compat_syscall() -> bool {
    // SAFETY: the current task, read through the helper.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let status: u32 =
        unsafe { bpf_probe_read_kernel(task.wrapping_add(TASK_TI_STATUS) as *const u32) }.unwrap_or(0);
    status & TS_COMPAT != 0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long id). Only exec is captured at entry: a successful exec
    // replaces the memory its arguments live in. Every other syscall returns after two compares.
    let nr: i64 = ctx.arg(1);
    if (nr != NR_EXECVE && nr != NR_EXECVEAT) || !watched() || compat_syscall() {
        return 0;
    }
    let regs: *const u64 = ctx.arg(0);
    if nr == NR_EXECVE {
        exec_enter(reg(regs, REG_ARGS[0]), reg(regs, REG_ARGS[1]), 0, 0);
    } else {
        let dirfd = reg(regs, REG_ARGS[0]) as u32;
        exec_enter(reg(regs, REG_ARGS[1]), reg(regs, REG_ARGS[2]), dirfd, ExecFlags::EXECVEAT);
    }
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long ret); the number is in orig_ax.
    let regs: *const u64 = ctx.arg(0);
    let nr = reg(regs, REG_ORIG_AX) as i64;
    if nr == NR_EXECVE || nr == NR_EXECVEAT {
        exec_exit(ctx.arg(1));
        return 0;
    }
    // The syscall number first (a few compares), then the cgroup: most calls stop here.
    let Some((sc, p1, p2, addr)) = classify(nr) else {
        return 0;
    };
    if !watched() || compat_syscall() {
        return 0;
    }
    sc_at_exit(sc, p1, p2, addr, ctx.arg(1), |i| match REG_ARGS.get(i) {
        Some(&slot) => reg(regs, slot),
        None => 0,
    });
    0
}

// ---- process lifecycle ----------------------------------------------------------------------

// Offsets in sched:sched_process_fork and sched:sched_process_exit (see their format files).
const FORK_CHILD_PID: usize = 20;
const EXIT_GROUP_DEAD: usize = 32;

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if watched() {
        let ev = ForkEvent {
            hdr: header(EventKind::Fork),
            // SAFETY: reading the tracepoint record at the offset of its format file.
            child_pid: unsafe { ctx.read_at::<u32>(FORK_CHILD_PID) }.unwrap_or(0),
            _pad: 0,
        };
        if EVENTS.output::<ForkEvent>(&ev, 0).is_ok() {
            count(EventKind::Fork, Stat::Emitted);
        } else {
            count(EventKind::Fork, Stat::Dropped);
        }
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    // Only whole-process exits: thread exits are not process-table events.
    // SAFETY: reading the tracepoint record at the offset of its format file.
    let group_dead = unsafe { ctx.read_at::<u8>(EXIT_GROUP_DEAD) }.unwrap_or(1);
    if group_dead != 0 && watched() {
        let ev = ExitEvent {
            hdr: header(EventKind::Exit),
        };
        if EVENTS.output::<ExitEvent>(&ev, 0).is_ok() {
            count(EventKind::Exit, Stat::Emitted);
        } else {
            count(EventKind::Exit, Stat::Dropped);
        }
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
