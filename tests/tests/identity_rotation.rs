//! Rotation under load: with a 10 s X.509-SVID TTL for 60 s, an mTLS server and client in the
//! sidecar's rustls configurations (each with its own rotating SVID from the Workload API)
//! exchange requests continuously with zero failures; at least 5 rotations happen on each side
//! and the handshakes really use the rotated certificates; a reader polling the SVID files
//! never sees a partial file or a certificate with another certificate's key.

mod identity_common;

use brainbox_sidecar::svid::{
    files::{BUNDLE_FILE, DATA_LINK, KEY_FILE, SVID_FILE},
    tls::{Authorize, SpiffeTls},
    Identity, SvidConfig,
};
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RUN: Duration = Duration::from_secs(60);

/// Checks one cert/key pair as a reader would see it; `Err` on a partial or mismatched pair.
fn check_pair(cert: &Path, key: &Path) -> Result<(), String> {
    let cert_text = std::fs::read_to_string(cert).map_err(|e| format!("read cert: {e}"))?;
    let key_text = std::fs::read_to_string(key).map_err(|e| format!("read key: {e}"))?;
    if !cert_text.trim_end().ends_with("-----END CERTIFICATE-----") {
        return Err("partial certificate file".into());
    }
    let leaf =
        brainbox_identity::ca::pem_decode_first(&cert_text, "CERTIFICATE").ok_or("no cert")?;
    let key_der = brainbox_identity::ca::pem_decode_first(&key_text, "PRIVATE KEY")
        .ok_or("partial key file")?;
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()))
        .map_err(|e| format!("key: {e}"))?;
    rustls::sign::CertifiedKey::new(vec![leaf.into()], key)
        .keys_match()
        .map_err(|e| format!("mismatched pair: {e}"))
}

#[derive(Default)]
struct ReaderStats {
    reads: AtomicU64,
    /// Pairs read from one resolved `..data` version: must never be bad.
    bad_versioned: AtomicU64,
    /// Files read through the top-level links: must never be partial.
    partial_top_level: AtomicU64,
    /// Top-level pairs that straddled a swap (informational: the documented way to read a
    /// consistent pair is through one resolved `..data`).
    straddled_top_level: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn poll_files(dir: PathBuf, stop: Arc<AtomicBool>, stats: Arc<ReaderStats>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(version) = std::fs::read_link(dir.join(DATA_LINK)) {
            let v = dir.join(version);
            match check_pair(&v.join(SVID_FILE), &v.join(KEY_FILE)) {
                Ok(()) => {}
                // The version directory two rotations back may be pruned while we read it.
                Err(e) if e.starts_with("read") && !v.exists() => {}
                Err(e) => {
                    stats.bad_versioned.fetch_add(1, Ordering::Relaxed);
                    stats.first_error.lock().unwrap().get_or_insert(e);
                }
            }
            match check_pair(&dir.join(SVID_FILE), &dir.join(KEY_FILE)) {
                Ok(()) => {}
                Err(e) if e.starts_with("mismatched") => {
                    stats.straddled_top_level.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.partial_top_level.fetch_add(1, Ordering::Relaxed);
                    stats.first_error.lock().unwrap().get_or_insert(e);
                }
            }
            stats.reads.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_rotating_svids_has_zero_failures_for_a_minute() {
    let api = identity_common::start("rotation", 10);
    let spiffe_id = brainbox_identity::spiffe_id::SpiffeId::parse(&api.spiffe_id).unwrap();
    let mk = |name: &str| {
        let cfg = SvidConfig {
            enabled: Some(true),
            endpoint: api.endpoint(),
            dir: api.dir.path().join(name),
            ..SvidConfig::default()
        };
        let id = Identity::new(cfg.unhealthy_below);
        tokio::spawn(brainbox_sidecar::svid::run(cfg.clone(), id.clone()));
        (cfg, id)
    };
    let (server_cfg, server_id) = mk("server-svid");
    let (_client_cfg, client_id) = mk("client-svid");
    let t0 = Instant::now();
    while !(server_id.health().0 && client_id.health().0) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no SVIDs after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server_cfg.dir.join(BUNDLE_FILE).exists());

    let authorize = Authorize::Ids(vec![spiffe_id.clone()]);
    let server_tls = SpiffeTls::new(
        server_id.store.clone(),
        server_id.provider.clone(),
        authorize.clone(),
        None,
    );
    let client_tls = SpiffeTls::new(
        client_id.store.clone(),
        client_id.provider.clone(),
        authorize,
        None,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls.server_config().unwrap()));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls.client_config().unwrap()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client_serials = Arc::new(Mutex::new(HashSet::new()));
    let seen = client_serials.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(certs) = tls.get_ref().1.peer_certificates() {
                    if let Ok(p) = brainbox_identity::x509::parse_svid(certs[0].as_ref()) {
                        seen.lock().unwrap().insert(p.serial_hex);
                    }
                }
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).await.is_ok() && &buf == b"ping" {
                    let _ = tls.write_all(b"pong").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(ReaderStats::default());
    let reader = {
        let (dir, stop, stats) = (server_cfg.dir.clone(), stop.clone(), stats.clone());
        std::thread::spawn(move || poll_files(dir, stop, stats))
    };

    let rotations_before = (
        server_id.metrics.rotations.get(),
        client_id.metrics.rotations.get(),
    );
    let mut ok = 0u64;
    let mut failures = Vec::new();
    let mut server_serials = HashSet::new();
    let mut store_serials = HashSet::new();
    let start = Instant::now();
    while start.elapsed() < RUN {
        if let Some(ck) = server_id.store.current() {
            if let Ok(p) = brainbox_identity::x509::parse_svid(ck.cert[0].as_ref()) {
                store_serials.insert(p.serial_hex);
            }
        }
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("workload").unwrap();
            let mut tls = connector.connect(name, tcp).await?;
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c[0].as_ref().to_vec());
            tls.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            if &buf != b"pong" {
                return Err(std::io::Error::other("bad reply"));
            }
            Ok::<_, std::io::Error>(leaf)
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(leaf)) => {
                ok += 1;
                if let Some(p) = leaf.and_then(|l| brainbox_identity::x509::parse_svid(&l).ok()) {
                    server_serials.insert(p.serial_hex);
                }
            }
            Ok(Err(e)) => failures.push(format!("{:?}: {e}", start.elapsed())),
            Err(_) => failures.push(format!("{:?}: timed out", start.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    server.abort();

    let server_rot = server_id.metrics.rotations.get() - rotations_before.0;
    let client_rot = client_id.metrics.rotations.get() - rotations_before.1;
    let client_serials = client_serials.lock().unwrap().len();
    eprintln!(
        "store_serials={} requests ok={ok} failures={} server_rotations={server_rot} client_rotations={client_rot} \
         server_certs_seen={} client_certs_seen={client_serials} file_reads={} bad_versioned={} \
         partial_top_level={} straddled_top_level={}",
        store_serials.len(),
        failures.len(),
        server_serials.len(),
        stats.reads.load(Ordering::Relaxed),
        stats.bad_versioned.load(Ordering::Relaxed),
        stats.partial_top_level.load(Ordering::Relaxed),
        stats.straddled_top_level.load(Ordering::Relaxed),
    );
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 500, "only {ok} requests in {RUN:?}");
    assert!(
        server_rot >= 5 && client_rot >= 5,
        "rotations: server {server_rot}, client {client_rot}"
    );
    assert!(
        server_serials.len() >= 5,
        "client saw only {} server certificates",
        server_serials.len()
    );
    assert!(
        client_serials >= 5,
        "server saw only {client_serials} client certificates"
    );
    assert!(stats.reads.load(Ordering::Relaxed) > 1000);
    assert_eq!(
        stats.bad_versioned.load(Ordering::Relaxed),
        0,
        "{:?}",
        stats.first_error.lock().unwrap()
    );
    assert_eq!(
        stats.partial_top_level.load(Ordering::Relaxed),
        0,
        "{:?}",
        stats.first_error.lock().unwrap()
    );
}
