//! `brainbox-sidecar logwrap --socket PATH -- CMD [ARGS…]`: runs an agent's command with its
//! standard output and error going to the pod's log socket (so through the sidecar's redaction)
//! instead of to the container runtime, which would hand them to the node unredacted.
//!
//! `brainboxctl inject --wrap-stdout` puts this in front of a workload container's `command`
//! (the binary is copied into the pod by an init container). It:
//! - connects to the socket first, and refuses to start the command without it (fail closed:
//!   nothing is printed where it would leave the pod unredacted);
//! - sends every line of the child's stdout and stderr, whole (the two never interleave inside a
//!   line), a line longer than `max_line` in pieces of at most `max_line` bytes;
//! - when the socket breaks (the sidecar restarts), holds the current line and reconnects; the
//!   child blocks on its next write meanwhile: nothing is dropped and nothing is printed (a
//!   line the broken connection had taken in part is sent again whole);
//! - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the child, and exits with
//!   the child's status (128 + the signal if it was killed by one);
//! - reaps what is left to it: it is the child subreaper of its command's process tree (and
//!   PID 1 of the container), so orphaned grandchildren that exit do not stay zombies.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long to wait for the log socket at start (`BRAINBOX_LOGWRAP_CONNECT_SECS`, default 30).
fn connect_wait() -> Duration {
    std::env::var("BRAINBOX_LOGWRAP_CONNECT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// Exit code when the command cannot be started (the shell's "not found").
const EXIT_NOT_FOUND: i32 = 127;
/// Exit code when the log socket is not there: the command is not run.
const EXIT_NO_SOCKET: i32 = 69;

/// The socket, reconnected on failure.
struct Sink {
    path: PathBuf,
    stream: Option<UnixStream>,
}

impl Sink {
    /// Writes `line` (which ends in `\n`) whole, reconnecting until it is written.
    fn send(&mut self, line: &[u8]) {
        loop {
            if self.stream.is_none() {
                self.stream = UnixStream::connect(&self.path).ok();
            }
            let written = self
                .stream
                .as_mut()
                .is_some_and(|s| s.write_all(line).is_ok());
            if written {
                return;
            }
            self.stream = None;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads `r` line by line (pieces of at most `max_line` bytes) into `sink`.
fn pump(r: impl Read, sink: &Mutex<Sink>, max_line: usize) {
    let mut r = BufReader::with_capacity(64 << 10, r);
    let mut line = Vec::with_capacity(256);
    // The last piece was cut at `max_line`: a newline right after it ends that line, not
    // another (empty) one.
    let mut cut = false;
    loop {
        let buf = match r.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        if std::mem::take(&mut cut) && buf[0] == b'\n' {
            r.consume(1);
            continue;
        }
        let avail = buf.len().min(max_line - line.len());
        let (take, end) = match memchr::memchr(b'\n', &buf[..avail]) {
            Some(i) => (i + 1, true),
            None => (avail, line.len() + avail == max_line),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if end {
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
                cut = true;
            }
            sink.lock().unwrap_or_else(|e| e.into_inner()).send(&line);
            line.clear();
        }
    }
    if !line.is_empty() {
        line.push(b'\n');
        sink.lock().unwrap_or_else(|e| e.into_inner()).send(&line);
    }
}

/// Runs `cmd` with its output to the log socket at `socket`; returns the exit code to use.
pub fn run(socket: &Path, cmd: &[OsString], max_line: usize) -> i32 {
    use nix::sys::signal::{SigSet, Signal};
    let Some((program, args)) = cmd.split_first() else {
        eprintln!("brainbox-sidecar logwrap: no command given (… logwrap -- CMD [ARGS])");
        return brainbox_common::EXIT_CONFIG;
    };
    let max_line = max_line.max(16);
    // The socket first: without it nothing runs.
    let deadline = Instant::now() + connect_wait();
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                eprintln!(
                    "brainbox-sidecar logwrap: the log socket {} is not there ({e}); not starting \
                     {:?}, whose output would leave the pod unredacted",
                    socket.display(),
                    program
                );
                return EXIT_NO_SOCKET;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // Signals to forward are blocked here, before any thread starts (threads inherit the mask),
    // and taken by one thread with sigwait. The child starts with an empty mask (std resets it).
    let mut forwarded = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        forwarded.add(s);
    }
    if let Err(e) = forwarded.thread_block() {
        eprintln!("brainbox-sidecar logwrap: cannot block signals: {e}");
        return 1;
    }
    // Orphans of the command's tree come to us (as to PID 1), to be reaped below; set before
    // the command starts, so none escapes.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brainbox-sidecar logwrap: cannot run {program:?}: {e}");
            return if e.kind() == std::io::ErrorKind::PermissionDenied {
                126
            } else {
                EXIT_NOT_FOUND
            };
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    std::thread::spawn(move || {
        while let Ok(sig) = forwarded.wait() {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    });
    let sink = Arc::new(Mutex::new(Sink {
        path: socket.to_owned(),
        stream: Some(stream),
    }));
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let sink = sink.clone();
        readers.push(std::thread::spawn(move || pump(out, &sink, max_line)));
    }
    if let Some(err) = child.stderr.take() {
        let sink = sink.clone();
        readers.push(std::thread::spawn(move || pump(err, &sink, max_line)));
    }
    // Wait for any child: the command, or an orphan to reap, until the command has exited.
    let code = loop {
        use nix::sys::wait::{waitpid, WaitStatus};
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, c)) if p == pid => break c,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => break 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("brainbox-sidecar logwrap: waiting for the command: {e}");
                return 1;
            }
        }
    };
    // The command was reaped above, not through `child`.
    drop(child);
    // What the child wrote before it exited is in the pipes: read it out. A grandchild that
    // kept the pipes open gets a few seconds, not forever.
    let deadline = Instant::now() + Duration::from_secs(5);
    for r in readers {
        while !r.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    // Every line was written with `write_all` on an unbuffered socket: nothing to flush.
    code
}

#[cfg(test)]
mod tests {
    use super::{pump, Sink};
    use std::{io::Read, os::unix::net::UnixListener, sync::Mutex};

    /// Lines through `pump` into a real socket, as the listener reads them.
    fn through(input: &[u8], max_line: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let sink = Mutex::new(Sink {
            path: path.clone(),
            stream: Some(std::os::unix::net::UnixStream::connect(&path).unwrap()),
        });
        let reader = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut v = Vec::new();
            c.read_to_end(&mut v).unwrap();
            v
        });
        pump(input, &sink, max_line);
        drop(sink);
        reader.join().unwrap()
    }

    #[test]
    fn lines_whole_long_ones_cut_last_one_terminated() {
        assert_eq!(through(b"a\nbb\n", 16), b"a\nbb\n");
        assert_eq!(through(b"a\nno newline", 64), b"a\nno newline\n");
        let long = [b'x'; 40];
        assert_eq!(
            through(&[&long[..], b"\n"].concat(), 16),
            [
                &[b'x'; 16][..],
                b"\n",
                &[b'x'; 16],
                b"\n",
                &[b'x'; 8],
                b"\n"
            ]
            .concat()
        );
        // A line of exactly the limit, then its newline: no empty line after it.
        assert_eq!(
            through(&[&[b'y'; 16][..], b"\nz\n"].concat(), 16),
            [&[b'y'; 16][..], b"\nz\n"].concat()
        );
        // Empty lines of the input stay.
        assert_eq!(through(b"a\n\nb\n", 16), b"a\n\nb\n");
        assert_eq!(through(b"", 16), b"");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever the child prints: no byte is lost, added or reordered (only newlines are
        /// added, where a line is cut or the output ends without one), no line is longer than
        /// the limit, and output whose lines fit comes through unchanged.
        #[test]
        fn no_byte_lost_and_lines_bounded(
            input in proptest::collection::vec(
                proptest::prop_oneof![4 => proptest::prelude::any::<u8>(), 1 => proptest::strategy::Just(b'\n')],
                0..400,
            ),
            max in 16usize..64,
        ) {
            let out = through(&input, max);
            let strip = |v: &[u8]| v.iter().copied().filter(|b| *b != b'\n').collect::<Vec<u8>>();
            proptest::prop_assert_eq!(strip(&out), strip(&input));
            proptest::prop_assert!(out.is_empty() || out.ends_with(b"\n"));
            for l in out.split(|b| *b == b'\n') {
                proptest::prop_assert!(l.len() <= max);
            }
            let fits = input.split(|b| *b == b'\n').all(|l| l.len() < max);
            if fits && (input.is_empty() || input.ends_with(b"\n")) {
                proptest::prop_assert_eq!(&out, &input);
            }
            // Newlines are only added: the input's own line breaks are all there.
            let count = |v: &[u8]| v.iter().filter(|b| **b == b'\n').count();
            proptest::prop_assert!(count(&out) >= count(&input));
        }
    }
}
