//! `brainboxctl webhook`: the sidecar injector as a Kubernetes mutating admission webhook,
//! served over TLS (rustls, ring provider). `POST /mutate` takes an `admission.k8s.io/v1`
//! `AdmissionReview` of a pod and answers with a JSON patch that injects the sidecar and the
//! hardening, or refuses the pod (with the reason) when it asks for what a brainbox may not have.

use crate::inject::{pod_patch, InjectConfig};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use std::{path::Path, sync::Arc};
use tokio::net::TcpListener;

/// The API server sends at most 3 MiB objects; anything larger is not a real review.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Errors starting the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Reading the certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// Binding or accepting.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An `admission.k8s.io/v1` AdmissionReview (the parts the webhook reads and writes).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1`.
    pub api_version: String,
    /// `AdmissionReview`.
    pub kind: String,
    /// The request (absent in responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AdmissionRequest>,
    /// The response (absent in requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<AdmissionResponse>,
}

/// What the API server asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// `{group, version, kind}` of the object.
    #[serde(default)]
    pub kind: serde_json::Value,
    /// `CREATE`, `UPDATE`, …
    #[serde(default)]
    pub operation: String,
    /// Namespace of the object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The object.
    #[serde(default)]
    pub object: serde_json::Value,
}

/// The webhook's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the object may be admitted.
    pub allowed: bool,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// Base64 of the RFC 6902 patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Why not, when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// `metav1.Status` (message and code).
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    /// HTTP-like code.
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
}

/// Decides one review: a patch for pods, a refusal for pods that cannot be made brainboxes,
/// and `allowed` without a patch for anything else.
pub fn review(req: AdmissionRequest, cfg: &InjectConfig) -> AdmissionResponse {
    let is_pod = req.kind.get("kind").and_then(|k| k.as_str()) == Some("Pod")
        || req.object.get("kind").and_then(|k| k.as_str()) == Some("Pod");
    if !is_pod || req.operation != "CREATE" {
        return AdmissionResponse {
            uid: req.uid,
            allowed: true,
            patch_type: None,
            patch: None,
            status: None,
        };
    }
    let mut object = req.object;
    if object.get("kind").is_none() {
        // Admission objects normally carry apiVersion/kind; make sure the injector sees a Pod.
        object["kind"] = "Pod".into();
        object["apiVersion"] = "v1".into();
    }
    match pod_patch(&object, cfg) {
        Ok(patch) => AdmissionResponse {
            uid: req.uid,
            allowed: true,
            patch_type: patch.as_ref().map(|_| "JSONPatch".to_string()),
            patch: patch.map(|p| {
                base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&p).unwrap_or_default())
            }),
            status: None,
        },
        Err(e) => {
            tracing::warn!(uid = %req.uid, namespace = ?req.namespace, reason = %e, "pod refused");
            AdmissionResponse {
                uid: req.uid,
                allowed: false,
                patch_type: None,
                patch: None,
                status: Some(Status {
                    code: 403,
                    message: format!("brainbox-guard: {e}"),
                }),
            }
        }
    }
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, WebhookError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let pem_err = |p: &Path| {
        let path = p.display().to_string();
        move |e: rustls::pki_types::pem::Error| WebhookError::Pem {
            path: path.clone(),
            reason: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn respond(code: StatusCode, body: Vec<u8>, json: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if json {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
    }
    r
}

async fn handle(req: Request<Incoming>, cfg: Arc<InjectConfig>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, b"ok".to_vec(), false),
        (&Method::POST, "/mutate") => {
            let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return respond(StatusCode::PAYLOAD_TOO_LARGE, b"too large".to_vec(), false)
                }
            };
            let review_in: AdmissionReview = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        format!("not an AdmissionReview: {e}").into_bytes(),
                        false,
                    )
                }
            };
            let Some(request) = review_in.request else {
                return respond(StatusCode::BAD_REQUEST, b"no request".to_vec(), false);
            };
            let out = AdmissionReview {
                api_version: review_in.api_version,
                kind: review_in.kind,
                request: None,
                response: Some(review(request, &cfg)),
            };
            respond(
                StatusCode::OK,
                serde_json::to_vec(&out).unwrap_or_default(),
                true,
            )
        }
        _ => respond(StatusCode::NOT_FOUND, b"not found".to_vec(), false),
    }
}

/// Serves the webhook on `listener` until the task is dropped. Each connection is handled on
/// its own task; a failed handshake or a broken connection affects only itself.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cfg: InjectConfig,
) -> Result<(), WebhookError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let cfg = Arc::new(cfg);
    loop {
        let (tcp, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req| {
                let cfg = cfg.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, cfg).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
