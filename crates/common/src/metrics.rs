//! The Prometheus `/metrics` endpoint (OpenMetrics text) served with hyper.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::{encoding::text::encode, registry::Registry};
use serde::Deserialize;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// Metrics endpoint settings, embedded as `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to serve `/metrics` on; empty disables the endpoint.
    pub listen: String,
}

impl MetricsConfig {
    /// A config listening on `addr`.
    pub fn on(addr: &str) -> Self {
        Self {
            listen: addr.to_owned(),
        }
    }

    /// Parses `listen`, naming `key` on failure. `Ok(None)` means disabled.
    pub fn addr(&self, key: &str) -> Result<Option<SocketAddr>, crate::config::ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|e| {
            crate::config::ConfigError::invalid(
                format!("{key}.listen"),
                format!("`{}` is not a socket address: {e}", self.listen),
            )
        })
    }
}

/// Errors from the metrics server.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` and serves `/metrics` (and `/healthz`) from `registry` until the task is dropped.
/// Returns the bound address (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<dyn Fn() -> (bool, String) + Send + Sync>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            let health = health.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let registry = registry.clone();
                    let health = health.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&req, &registry, &*health)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn respond(
    req: &Request<Incoming>,
    registry: &Registry,
    health: &(dyn Fn() -> (bool, String) + Send + Sync),
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            if encode(&mut body, registry).is_err() {
                return status(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
            }
            Response::builder()
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(body)))
                .expect("static response")
        }
        "/healthz" => {
            let (ok, why) = health();
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            status(code, &format!("{why}\n"))
        }
        _ => status(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn status(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("static response")
}
