//! The `SpiffeWorkloadAPI` gRPC service: every call is attested by the caller's peer
//! credentials, must carry the `workload.spiffe.io: true` header, and yields only the caller's
//! own identity. X.509-SVIDs are streamed and re-issued before half their TTL has passed.

use super::{
    attest::{Attest, Attested},
    IdentityMetrics,
};
use brainbox_identity::{
    ca::Ca,
    denylist::SharedDenyList,
    jwt::{self, JwtBundle, JwtSigner},
    now_unix,
    proto::{
        self, spiffe_workload_api_server::SpiffeWorkloadApi, JwtBundlesRequest, JwtBundlesResponse,
        JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest, ValidateJwtsvidResponse,
        X509BundlesRequest, X509BundlesResponse, X509svidRequest, X509svidResponse,
    },
    replay::ReplayCache,
    WORKLOAD_API_HEADER,
};
use std::{collections::HashMap, pin::Pin, sync::Arc};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{transport::server::UdsConnectInfo, Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Workload API server state.
pub struct WorkloadApi {
    /// Maps callers to identities.
    pub attestor: Arc<dyn Attest>,
    /// Issues X.509-SVIDs.
    pub ca: Arc<Ca>,
    /// Signs JWT-SVIDs.
    pub jwt: Arc<JwtSigner>,
    /// Revoked IDs and serials.
    pub deny: SharedDenyList,
    /// `jti`s already validated.
    pub replay: Arc<ReplayCache>,
    /// Counters.
    pub metrics: Arc<IdentityMetrics>,
    /// False until the pushed revocations have been replayed (or their wait ran out): no
    /// identity is issued from a deny-list that may be missing entries.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// Fraction of the TTL after which a new X.509-SVID is pushed: well before half, so a client
/// that is slow to swap still has a valid certificate and the "rotate at half-life" rule of
/// SPIFFE clients is never hit.
const REFRESH_FRACTION: f64 = 0.4;

fn check_header<T>(req: &Request<T>) -> Result<(), Status> {
    match req.metadata().get(WORKLOAD_API_HEADER) {
        Some(v) if v.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn peer_pid<T>(req: &Request<T>) -> u32 {
    req.extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(0)
}

impl WorkloadApi {
    fn attest<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<Attested, Status> {
        check_header(req)?;
        if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Status::unavailable(
                "revocations are still loading; retry shortly",
            ));
        }
        let pid = peer_pid(req);
        match self.attestor.attest(pid) {
            Ok(a) => {
                if self.deny.current().denies_id(a.spiffe_id.as_str()) {
                    self.metrics.denied.inc();
                    tracing::warn!(rpc, pid, spiffe_id = %a.spiffe_id, "identity is revoked");
                    return Err(Status::permission_denied("identity is revoked"));
                }
                Ok(a)
            }
            Err(e) => {
                self.metrics.denied.inc();
                tracing::info!(rpc, pid, reason = %e, "workload attestation refused");
                Err(Status::permission_denied(
                    "no identity issued for this process",
                ))
            }
        }
    }

    fn x509_response(&self, a: &Attested) -> Result<(X509svidResponse, u64, String), Status> {
        let svid = self
            .ca
            .issue_x509(&a.spiffe_id, a.x509_ttl)
            .map_err(|e| Status::internal(e.to_string()))?;
        self.metrics.x509_issued.inc();
        let resp = X509svidResponse {
            svids: vec![proto::X509svid {
                spiffe_id: a.spiffe_id.to_string(),
                x509_svid: svid.chain.concat(),
                x509_svid_key: svid.key_pkcs8.clone(),
                bundle: self.ca.root_der().to_vec(),
                hint: String::new(),
            }],
            crl: Vec::new(),
            federated_bundles: HashMap::new(),
        };
        Ok((resp, svid.not_after, svid.serial_hex))
    }

    fn bundle_key(&self) -> String {
        format!("spiffe://{}", self.ca.trust_domain())
    }

    fn jwt_bundle(&self) -> JwtBundle {
        JwtBundle {
            keys: vec![self.jwt.public()],
        }
    }
}

/// Sends one message, then keeps the stream open until the client goes away (bundles change
/// only when the agent restarts).
fn send_and_hold<T: Send + 'static>(msg: T) -> BoxStream<T> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if tx.send(Ok(msg)).await.is_ok() {
            tx.closed().await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// The gRPC service: a cheap handle on the shared state.
#[derive(Clone)]
pub struct Service(pub Arc<WorkloadApi>);

#[tonic::async_trait]
impl SpiffeWorkloadApi for Service {
    type FetchX509SVIDStream = BoxStream<X509svidResponse>;
    type FetchX509BundlesStream = BoxStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = BoxStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let first = self.0.attest(&req, "FetchX509SVID")?;
        let pid = peer_pid(&req);
        let (resp, _, mut serial) = self.0.x509_response(&first)?;
        tracing::info!(pid, spiffe_id = %first.spiffe_id, container = %first.container, "X.509-SVID stream opened");
        let (tx, rx) = mpsc::channel(2);
        let api = self.0.clone();
        tokio::spawn(async move {
            let mut deny_rx = api.deny.subscribe();
            let mut msg = resp;
            let mut ttl = first.x509_ttl;
            loop {
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                let wait = ttl.mul_f64(REFRESH_FRACTION);
                let deadline = tokio::time::Instant::now() + wait;
                // Wait for the refresh time; a deny-list change re-checks at once.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = tx.closed() => return,
                        r = deny_rx.changed() => {
                            if r.is_err() { return; }
                            let list = deny_rx.borrow_and_update().clone();
                            if list.denies_id(first.spiffe_id.as_str()) {
                                api.metrics.denied.inc();
                                tracing::warn!(spiffe_id = %first.spiffe_id, "identity revoked: ending its X.509-SVID stream");
                                let _ = tx.send(Err(Status::permission_denied("identity is revoked"))).await;
                                return;
                            }
                            if list.denies_serial(&serial) {
                                // Only this certificate was revoked: replace it now.
                                break;
                            }
                        }
                    }
                }
                // Re-attest: the container may have gone, or its profile changed.
                let a = match api.attestor.attest(pid) {
                    Ok(a) if a.spiffe_id == first.spiffe_id => a,
                    Ok(_) | Err(_) => {
                        api.metrics.denied.inc();
                        let _ = tx
                            .send(Err(Status::permission_denied(
                                "caller no longer attests to this identity",
                            )))
                            .await;
                        return;
                    }
                };
                if api.deny.current().denies_id(a.spiffe_id.as_str()) {
                    let _ = tx
                        .send(Err(Status::permission_denied("identity is revoked")))
                        .await;
                    return;
                }
                ttl = a.x509_ttl;
                match api.x509_response(&a) {
                    Ok((m, na, s)) => {
                        msg = m;
                        serial = s;
                        tracing::debug!(spiffe_id = %a.spiffe_id, not_after = na, "X.509-SVID rotated");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "X.509-SVID issuance failed");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.0.attest(&req, "FetchX509Bundles")?;
        let msg = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(self.0.bundle_key(), self.0.ca.root_der().to_vec())]),
        };
        Ok(Response::new(send_and_hold(msg)))
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let a = self.0.attest(&req, "FetchJWTSVID")?;
        let r = req.get_ref();
        if r.audience.is_empty()
            || r.audience.iter().any(|a| a.is_empty() || a.len() > 256)
            || r.audience.len() > 16
        {
            return Err(Status::invalid_argument(
                "audience must be 1-16 non-empty strings",
            ));
        }
        if !r.spiffe_id.is_empty() && r.spiffe_id != a.spiffe_id.as_str() {
            self.0.metrics.denied.inc();
            return Err(Status::permission_denied(
                "caller is not entitled to that SPIFFE ID",
            ));
        }
        if !a.audiences.is_empty() {
            if let Some(bad) = r.audience.iter().find(|x| !a.audiences.contains(x)) {
                return Err(Status::permission_denied(format!(
                    "audience `{bad}` is not allowed by the profile"
                )));
            }
        }
        let (token, _) = self
            .0
            .jwt
            .sign(&a.spiffe_id, &r.audience, now_unix(), a.jwt_ttl.as_secs())
            .map_err(|e| Status::internal(e.to_string()))?;
        self.0.metrics.jwt_issued.inc();
        Ok(Response::new(JwtsvidResponse {
            svids: vec![proto::Jwtsvid {
                spiffe_id: a.spiffe_id.to_string(),
                svid: token,
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.0.attest(&req, "FetchJWTBundles")?;
        let msg = JwtBundlesResponse {
            bundles: HashMap::from([(self.0.bundle_key(), self.0.jwt_bundle().to_jwks(60))]),
        };
        Ok(Response::new(send_and_hold(msg)))
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.0.attest(&req, "ValidateJWTSVID")?;
        let r = req.get_ref();
        if r.audience.is_empty() || r.svid.is_empty() {
            return Err(Status::invalid_argument("audience and svid are required"));
        }
        let now = now_unix();
        let (id, claims) = jwt::validate(
            &r.svid,
            self.0.ca.trust_domain(),
            &self.0.jwt_bundle(),
            &r.audience,
            now,
        )
        .map_err(|e| {
            self.0.metrics.jwt_refused.inc();
            Status::invalid_argument(format!("invalid JWT-SVID: {e}"))
        })?;
        if self.0.deny.current().denies_id(id.as_str()) {
            self.0.metrics.jwt_refused.inc();
            return Err(Status::permission_denied(format!("{id} is revoked")));
        }
        self.0
            .replay
            .check_and_insert(&claims.jti, claims.exp, now)
            .map_err(|e| {
                self.0.metrics.jwt_refused.inc();
                Status::permission_denied(format!("JWT-SVID refused: {e}"))
            })?;
        let claims_struct = json_to_struct(serde_json::to_value(&claims).unwrap_or_default());
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: id.to_string(),
            claims: Some(claims_struct),
        }))
    }
}

fn json_to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(v)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn json_to_struct(v: serde_json::Value) -> prost_types::Struct {
    match v {
        serde_json::Value::Object(m) => prost_types::Struct {
            fields: m.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
        },
        _ => prost_types::Struct::default(),
    }
}
