//! brainbox-guard's kernel side: tracepoint programs that report what watched containers do.
//!
//! Filtering happens here, first thing: a process whose cgroup v2 id is not in `WATCHED` costs one
//! hash lookup and nothing else. Events go to one ring buffer; every emit and every drop is
//! counted per kind in `STATS` so user space can export drops instead of hiding them.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use brainbox_ebpf_common::{
    stat_index, EventHeader, EventKind, ExecEvent, ExecFlags, Stat, ARG_LEN, MAX_ARGS, PATH_LEN,
    STATS_LEN,
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

#[inline(always)]
fn count(kind: EventKind, stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(stat_index(kind as u32, stat)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
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
        exec_enter(&ctx, EXECVE_FILENAME, EXECVE_ARGV, 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    if watched() {
        exec_enter(&ctx, EXECVEAT_FILENAME, EXECVEAT_ARGV, ExecFlags::EXECVEAT);
    }
    0
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    exec_exit(&ctx);
    0
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    exec_exit(&ctx);
    0
}

#[inline(always)]
fn exec_enter(ctx: &TracePointContext, filename_off: usize, argv_off: usize, flags: u32) {
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
    ev._pad = 0;

    // SAFETY: reading the tracepoint record at offsets taken from its format file.
    let filename: *const u8 = unsafe { ctx.read_at(filename_off) }.unwrap_or(core::ptr::null());
    let argv: *const *const u8 = unsafe { ctx.read_at(argv_off) }.unwrap_or(core::ptr::null());

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
fn exec_exit(ctx: &TracePointContext) {
    let tid = bpf_get_current_pid_tgid();
    let Some(ev) = PENDING_EXEC.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: reading the tracepoint record at the offset from its format file.
    let ret: i64 = unsafe { ctx.read_at(SYS_EXIT_RET) }.unwrap_or(-1);
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
