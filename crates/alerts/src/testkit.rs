//! Test helpers (feature `testkit`): a private `nats-server -js` on a free loopback port with
//! its own store directory, killed when dropped.

use crate::{Alert, ContainerRef, Priority};
use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
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

/// Waits up to `limit` until something accepts TCP connections on loopback `port`.
pub fn wait_listening(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
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
        assert!(
            wait_listening(self.port, Duration::from_secs(10)),
            "nats-server did not start listening on port {}",
            self.port
        );
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

/// The NATS manifest we ship.
const NATS_MANIFEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/kubernetes/20-nats.yaml"
);

/// `nats.conf` as the ConfigMap in `deploy/kubernetes/20-nats.yaml` carries it.
pub fn shipped_nats_conf() -> String {
    let text = std::fs::read_to_string(NATS_MANIFEST).expect("reading the NATS manifest");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim_end() == "  nats.conf: |" {
            inside = true;
            continue;
        }
        if inside {
            if !line.is_empty() && !line.starts_with("    ") {
                break;
            }
            out.push_str(line.strip_prefix("    ").unwrap_or(""));
            out.push('\n');
        }
    }
    assert!(
        out.contains("authorization"),
        "no nats.conf with an authorization block in {NATS_MANIFEST}"
    );
    out
}

/// A `nats-server` running the shipped configuration (TLS, users, permissions), killed when
/// dropped. Passwords: `agent-pw`, `sidecar-pw`, `operator-pw`, also in files
/// ([`ShippedNats::password_file`]).
pub struct ShippedNats {
    child: Child,
    /// `tls://127.0.0.1:<port>`.
    pub url: String,
    dir: tempfile::TempDir,
    /// The CA (here: the server's self-signed certificate) clients verify the server with.
    pub ca: PathBuf,
}

impl Drop for ShippedNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ShippedNats {
    /// The shipped configuration on a free loopback port, with a private store and a test
    /// certificate; only the listen address, the server name, the store folder and the
    /// certificate files are changed.
    pub fn start() -> ShippedNats {
        require_nats_server();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let mut conf = String::new();
        for line in shipped_nats_conf().lines() {
            let t = line.trim();
            let line = if t.starts_with("port:") {
                format!("port: {port}\nhost: 127.0.0.1")
            } else if t.starts_with("http_port:") {
                continue;
            } else if t.starts_with("server_name:") {
                "server_name: permissions-test".to_owned()
            } else if t.starts_with("store_dir:") {
                format!("  store_dir: {}", dir.path().join("js").display())
            } else if t.starts_with("cert_file:") {
                format!("  cert_file: {}", cert.display())
            } else if t.starts_with("key_file:") {
                format!("  key_file: {}", key.display())
            } else {
                line.to_owned()
            };
            conf.push_str(&line);
            conf.push('\n');
        }
        let conf_path = dir.path().join("nats.conf");
        std::fs::write(&conf_path, &conf).unwrap();
        for (user, pw) in [
            ("node-agent", "agent-pw"),
            ("sidecar", "sidecar-pw"),
            ("operator", "operator-pw"),
        ] {
            std::fs::write(dir.path().join(user), format!("{pw}\n")).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf_path)
            .env("NATS_NODE_AGENT_PASSWORD", "agent-pw")
            .env("NATS_SIDECAR_PASSWORD", "sidecar-pw")
            .env("NATS_OPERATOR_PASSWORD", "operator-pw")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        assert!(
            wait_listening(port, Duration::from_secs(10)),
            "nats-server did not start with the shipped configuration: {}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        assert!(
            conf.contains(&format!("cert_file: {}", cert.display())),
            "the shipped nats.conf has no TLS certificate to replace"
        );
        ShippedNats {
            child,
            url: format!("tls://127.0.0.1:{port}"),
            dir,
            ca: cert,
        }
    }

    /// Credentials of `user` (`node-agent`, `sidecar`, `operator`) with the CA.
    pub fn auth(&self, user: &str) -> brainbox_common::nats::NatsAuth {
        brainbox_common::nats::NatsAuth {
            user: user.into(),
            password_file: self.password_file(user),
            ca_file: self.ca.clone(),
            ..Default::default()
        }
    }

    /// The file holding `user`'s password.
    pub fn password_file(&self, user: &str) -> PathBuf {
        self.dir.path().join(user)
    }

    /// A client as `user`, with short request timeouts: a denied publish gets no answer.
    pub async fn client(&self, user: &str) -> anyhow::Result<async_nats::Client> {
        let opts = self
            .auth(user)
            .apply(async_nats::ConnectOptions::new())
            .map_err(anyhow::Error::msg)?
            .request_timeout(Some(Duration::from_millis(1500)));
        Ok(opts.connect(&self.url).await?)
    }
}
