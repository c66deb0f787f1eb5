//! The Workload API server over a real Unix socket, with a tonic client: header check,
//! attestation refusal, X.509 rotation on the stream, JWT issue/validate/replay, revocation.

use super::{attest::*, *};
use brainbox_identity::{
    proto::{
        spiffe_workload_api_client::SpiffeWorkloadApiClient, JwtBundlesRequest, JwtsvidRequest,
        ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
    },
    spiffe_id::SpiffeId,
};
use hyper_util::rt::TokioIo;
use tonic::{transport::Channel, Code, Request};
use x509_parser::prelude::*;

struct OnlyPid {
    pid: u32,
    id: SpiffeId,
    ttl: Duration,
}

impl Attest for OnlyPid {
    fn attest(&self, pid: u32) -> Result<Attested, AttestError> {
        if pid != self.pid {
            return Err(AttestError::UnknownContainer(pid));
        }
        Ok(Attested {
            spiffe_id: self.id.clone(),
            container: "test".into(),
            x509_ttl: self.ttl,
            jwt_ttl: Duration::from_secs(60),
            audiences: vec![],
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    svc: IdentityService,
    metrics: Arc<IdentityMetrics>,
}

fn id() -> SpiffeId {
    SpiffeId::parse("spiffe://brainbox.test/ns/default/brainbox/p1").unwrap()
}

fn start_with(pid: u32, ttl: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api/agent.sock");
    let cfg = IdentityConfig {
        socket: socket.clone(),
        trust_domain: "brainbox.test".into(),
        replay_capacity: 1000,
        ..IdentityConfig::default()
    };
    let metrics = Arc::new(IdentityMetrics::default());
    let svc = super::start(
        &cfg,
        Arc::new(OnlyPid { pid, id: id(), ttl }),
        metrics.clone(),
        false,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        socket,
        svc,
        metrics,
    }
}

async fn client(path: &Path) -> SpiffeWorkloadApiClient<Channel> {
    let path = path.to_owned();
    let ch = tonic::transport::Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .unwrap();
    SpiffeWorkloadApiClient::new(ch)
}

fn req<T>(m: T) -> Request<T> {
    let mut r = Request::new(m);
    r.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    r
}

#[tokio::test]
async fn missing_header_is_invalid_argument_and_stranger_is_denied() {
    let f = start_with(std::process::id(), Duration::from_secs(60));
    let mut c = client(&f.socket).await;
    let e = c
        .fetch_x509svid(Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c
        .fetch_jwtsvid(Request::new(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    drop(c);

    // Same server logic, but this process is not the one the attestor knows.
    let g = start_with(1, Duration::from_secs(60));
    let mut c = client(&g.socket).await;
    for code in [
        c.fetch_x509svid(req(X509svidRequest {}))
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        c.fetch_x509_bundles(req(X509BundlesRequest {}))
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        c.fetch_jwt_bundles(req(JwtBundlesRequest {}))
            .await
            .map(|_| ())
            .unwrap_err()
            .code(),
        c.fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .map(|_| ())
        .unwrap_err()
        .code(),
    ] {
        assert_eq!(code, Code::PermissionDenied);
    }
    assert!(g.metrics.denied.get() >= 4);
}

#[tokio::test]
async fn x509_svid_chains_to_the_bundle_and_rotates_before_half_ttl() {
    let f = start_with(std::process::id(), Duration::from_secs(10));
    let mut c = client(&f.socket).await;
    let started = std::time::Instant::now();
    let mut stream = c
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let svid = &first.svids[0];
    assert_eq!(svid.spiffe_id, id().as_str());
    let chain = brainbox_identity::x509::split_der_chain(&svid.x509_svid).unwrap();
    assert_eq!(chain.len(), 2);
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let (_, inter) = X509Certificate::from_der(&chain[1]).unwrap();
    let (_, root) = X509Certificate::from_der(&svid.bundle).unwrap();
    leaf.verify_signature(Some(inter.public_key())).unwrap();
    inter.verify_signature(Some(root.public_key())).unwrap();
    // The key is the certificate's key.
    let kp = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &svid.x509_svid_key,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    use ring::signature::KeyPair;
    assert_eq!(
        kp.public_key().as_ref(),
        &*leaf.public_key().subject_public_key.data
    );
    let first_serial = brainbox_identity::x509::parse_svid(&chain[0])
        .unwrap()
        .serial_hex;

    let second = tokio::time::timeout(Duration::from_secs(8), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "pushed after {elapsed:?}, half the TTL is 5 s"
    );
    let chain2 = brainbox_identity::x509::split_der_chain(&second.svids[0].x509_svid).unwrap();
    let serial2 = brainbox_identity::x509::parse_svid(&chain2[0])
        .unwrap()
        .serial_hex;
    assert_ne!(first_serial, serial2);

    // Bundles: the root, keyed by the trust domain's SPIFFE ID.
    let b = c
        .fetch_x509_bundles(req(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.bundles.get("spiffe://brainbox.test").unwrap(),
        &svid.bundle
    );
}

#[tokio::test]
async fn jwt_issue_validate_replay_and_entitlement() {
    let f = start_with(std::process::id(), Duration::from_secs(60));
    let mut c = client(&f.socket).await;
    let e = c
        .fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec!["svc".into()],
            spiffe_id: "spiffe://brainbox.test/ns/default/brainbox/other".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "another's identity must be refused"
    );
    let r = c
        .fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec!["svc".into()],
            spiffe_id: id().to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    let token = r.svids[0].svid.clone();

    // The JWKS bundle verifies it offline.
    let jb = c
        .fetch_jwt_bundles(req(JwtBundlesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let bundle = brainbox_identity::jwt::JwtBundle::from_jwks(
        jb.bundles.get("spiffe://brainbox.test").unwrap(),
    )
    .unwrap();
    let (sub, claims) = brainbox_identity::jwt::validate(
        &token,
        "brainbox.test",
        &bundle,
        "svc",
        brainbox_identity::now_unix(),
    )
    .unwrap();
    assert_eq!(sub, id());
    assert!(!claims.jti.is_empty());

    let v = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: token.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, id().as_str());
    let claims = v.claims.unwrap();
    assert!(claims.fields.contains_key("jti") && claims.fields.contains_key("exp"));
    // The same token again is a replay.
    let e = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: token.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("replayed"), "{e}");
    // Wrong audience and garbage are refused.
    let e = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "other".into(),
            svid: token,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: "a.b.c".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn revocation_ends_the_stream_within_a_second_and_refuses_new_tokens() {
    let f = start_with(std::process::id(), Duration::from_secs(60));
    let mut c = client(&f.socket).await;
    let token = c
        .fetch_jwtsvid(req(JwtsvidRequest {
            audience: vec!["svc".into()],
            spiffe_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .svids[0]
        .svid
        .clone();
    let mut stream = c
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    let t = std::time::Instant::now();
    f.svc.deny.push(&brainbox_identity::denylist::Revocation {
        spiffe_id: Some(id().to_string()),
        serial: None,
    });
    let e = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("revocation took longer than a second")
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(t.elapsed() < Duration::from_secs(1));
    let e = c
        .fetch_x509svid(req(X509svidRequest {}))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = c
        .validate_jwtsvid(req(ValidateJwtsvidRequest {
            audience: "svc".into(),
            svid: token,
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}
