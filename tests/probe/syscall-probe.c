/* syscall-probe: calls each system call a brainbox must not use, with arguments that are
 * harmless whatever happens (NULL pointers, invalid flags, invalid descriptors), and prints
 * "<name> <errno name>" per call ("OK" when it succeeded). Built static with musl-gcc by the
 * lab tests and run inside containers under each seccomp profile.
 *
 * Under a profile that refuses a call, the filter answers before the kernel looks at the
 * arguments, so the result is EPERM; without the filter the same call fails differently
 * (EFAULT, EINVAL, EBADF, ...) or succeeds, which is how the tests tell the two apart. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ESRCH: return "ESRCH";
    case EBUSY: return "EBUSY";
    case ENOTDIR: return "ENOTDIR";
    case ENOMEM: return "ENOMEM";
    default: return "OTHER";
    }
}

static void probe(const char *name, long rc) {
    int e = rc < 0 ? errno : 0;
    printf("%s %s %d\n", name, ename(e), e);
}

#define P(name, ...) do { errno = 0; probe(#name, syscall(SYS_##name, __VA_ARGS__)); } while (0)

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    P(mount, 0L, 0L, 0L, 0L, 0L);                 /* NULL target: EFAULT without a filter */
    P(umount2, 0L, 0L);
    P(unshare, 0x80000000L);                      /* an undefined flag: EINVAL */
    P(setns, -1L, 0L);                            /* bad fd: EBADF */
    P(pivot_root, 0L, 0L);
    P(chroot, 0L);
    P(ptrace, 0x4206L /* PTRACE_SEIZE */, 0L, 0L, 0L); /* pid 0 does not exist: ESRCH */
    P(process_vm_readv, 0L, 0L, 0L, 0L, 0L, 1L);  /* bad flags: EINVAL */
    P(bpf, -1L, 0L, 0L);
    P(keyctl, 9999L, 0L, 0L, 0L, 0L);             /* no such operation: EOPNOTSUPP */
    P(add_key, 0L, 0L, 0L, 0L, 0L);
    P(request_key, 0L, 0L, 0L, 0L);
    P(userfaultfd, -1L);                          /* bad flags: EINVAL */
    P(perf_event_open, 0L, 0L, -1L, -1L, 0L);     /* NULL attr: EFAULT */
    P(init_module, 0L, 0L, 0L);
    P(finit_module, -1L, 0L, 0L);
    P(delete_module, 0L, -1L);
    P(kexec_load, 0L, 0L, 0L, -1L);               /* bad flags */
    P(kexec_file_load, -1L, -1L, 0L, 0L, -1L);
    P(swapon, 0L, 0L);
    P(acct, 1L);                                   /* bad pointer: EFAULT (NULL would switch accounting off) */
    P(clock_settime, 99L, 0L);                    /* no such clock */
    P(io_uring_setup, 0L, 0L);
    P(open_by_handle_at, -1L, 0L, 0L);
    P(fsopen, 0L, -1L);
    P(open_tree, -1L, 0L, -1L);
    P(iopl, 99L);
    return 0;
}
