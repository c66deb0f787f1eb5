//! Test helpers (feature `testkit`): a private `nats-server -js` on a free loopback port with
//! its own store directory, killed when dropped.

use crate::{Alert, ContainerRef, Priority};
use std::{
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

/// Synthetic alert number `i` of run `run` on `node` (its output says `load #<i>`).
pub fn load_alert(node: &str, run: &str, i: u64) -> Alert {
    Alert::for_event(
        node,
        ContainerRef {
            id: format!("load-{run}"),
            name: "load".into(),
            image: "load:test".into(),
            ..Default::default()
        },
        "Synthetic load alert",
        Priority::Warning,
        vec!["load".into()],
        format!("load #{i}"),
        SystemTime::UNIX_EPOCH + Duration::from_nanos(i + 1),
        1,
    )
}

/// A private JetStream server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

/// A free loopback port (bound then released; good enough for a private test server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Fails the test with a clear message if `nats-server` is not installed.
pub fn require_nats_server() {
    let ok = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "nats-server is not installed: this test needs a real `nats-server -js` \
         (Debian package `nats-server`, see scripts/setup.d/alerts.packages)"
    );
}

impl NatsServer {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` with a fresh store directory.
    pub fn start_on(port: u16) -> Self {
        require_nats_server();
        let store = tempfile::tempdir().expect("temp store dir");
        let mut s = NatsServer {
            child: None,
            port,
            store,
        };
        s.restart();
        s
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait until the port is really closed so clients see the outage.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (Re)starts the server on the same port and store and waits until it accepts clients.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start listening on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A safe-mode [`Actuator`](crate::monitor::Actuator) that only records what the monitor asked:
/// `enter <action> <reasons, comma-separated>` and `leave`, in order.
#[derive(Clone, Default)]
pub struct RecordingActuator(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl crate::monitor::Actuator for RecordingActuator {
    async fn enter(
        &mut self,
        action: crate::safety::SafeAction,
        reasons: &[crate::safety::Reason],
    ) -> Result<(), String> {
        let r: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("enter {} {}", action.as_str(), r.join(",")));
        Ok(())
    }

    async fn leave(&mut self) -> Result<(), String> {
        self.0.lock().unwrap().push("leave".into());
        Ok(())
    }
}

impl RecordingActuator {
    /// What was recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` events were recorded, and checks that the `n`th is `what`.
    pub async fn wait_for(&self, n: usize, what: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.events();
            if v.len() >= n {
                anyhow::ensure!(v[n - 1] == what, "event {n}: expected `{what}`, got {v:?}");
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out waiting for `{what}`: {v:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
