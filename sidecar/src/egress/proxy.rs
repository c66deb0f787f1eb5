//! The proxy server: accept, parse, decide, resolve, check, dial, relay.

use super::{
    audit::{AuditEvent, AuditSink, EgressMetrics},
    client_hello::parse_client_hello,
    config::{EgressConfig, Limits},
    http::{parse_request, parse_response, BodyFraming, ChunkedScanner, RequestInfo, RequestKind},
    identity::IdentitySource,
    policy::{addr_reason, Decision, Policy, Target, Verdict},
    state::{Current, Egress},
    EgressError,
};
use brainbox_profile::egress::{RuleMode, TunnelKind};
use bytes::{Buf, BytesMut};
use hickory_resolver::{
    config::{NameServerConfig, NameServerConfigGroup, Protocol, ResolverConfig, ResolverOpts},
    TokioAsyncResolver,
};
use prometheus_client::metrics::counter::Counter;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
    time::{timeout, timeout_at, Instant},
};

/// A running proxy.
pub struct EgressHandle {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Identity and policy state (tests call `refresh` to skip the wait).
    pub state: Arc<Egress>,
    accept: JoinHandle<()>,
    refresh: JoinHandle<()>,
}

impl EgressHandle {
    /// Stops accepting and refreshing (open connections finish on their own).
    pub fn stop(&self) {
        self.accept.abort();
        self.refresh.abort();
    }
}

impl Drop for EgressHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    limits: Limits,
    state: Arc<Egress>,
    resolver: TokioAsyncResolver,
    audit: Arc<dyn AuditSink>,
    metrics: EgressMetrics,
    per_dest: Mutex<HashMap<String, usize>>,
    epoch: Instant,
}

/// Starts the proxy with an explicit identity source and audit sink.
pub async fn start(
    cfg: &EgressConfig,
    identity: Arc<dyn IdentitySource>,
    audit: Arc<dyn AuditSink>,
    metrics: EgressMetrics,
) -> Result<EgressHandle, EgressError> {
    cfg.validate("egress")?;
    let addr = cfg.listen_addr("egress")?;
    // A policy folder that exists but does not load is a configuration error at start; later
    // reloads keep the last good policy instead.
    if std::path::Path::new(&cfg.policy_dir).is_dir() {
        brainbox_profile::egress::EgressPolicySet::load_dir(std::path::Path::new(&cfg.policy_dir))?;
    } else {
        tracing::warn!(policy_dir = %cfg.policy_dir, "egress: no policy folder; all egress is refused");
    }
    let state = Arc::new(Egress::new(cfg, identity));
    state.refresh()?;
    let resolver = build_resolver(&cfg.nameservers)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EgressError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| EgressError::Bind { addr, source })?;
    let shared = Arc::new(Shared {
        limits: cfg.limits.clone(),
        state: state.clone(),
        resolver,
        audit,
        metrics,
        per_dest: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
    });
    let every = Duration::from_millis(cfg.refresh_ms.max(50));
    let st = state.clone();
    let refresh = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let st = st.clone();
            // File reads are blocking; keep them off the proxy's workers.
            let _ = tokio::task::spawn_blocking(move || st.refresh()).await;
        }
    });
    let accept = tokio::spawn(accept_loop(listener, shared));
    tracing::info!(listen = %local_addr, "egress proxy serving");
    Ok(EgressHandle {
        local_addr,
        state,
        accept,
        refresh,
    })
}

fn build_resolver(nameservers: &[String]) -> Result<TokioAsyncResolver, EgressError> {
    if nameservers.is_empty() {
        return Ok(match TokioAsyncResolver::tokio_from_system_conf() {
            Ok(r) => r,
            Err(e) => {
                // A FROM-scratch image may have no resolv.conf: keep serving (literal-IP rules
                // still work), and let every name fail as `resolve-failed`.
                tracing::warn!(error = %e, "egress: no system resolver configuration; names will not resolve");
                TokioAsyncResolver::tokio(
                    ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::new()),
                    ResolverOpts::default(),
                )
            }
        });
    }
    let mut group = NameServerConfigGroup::new();
    for ns in nameservers {
        let addr: SocketAddr = ns
            .parse()
            .map_err(|e| EgressError::Resolver(format!("{ns}: {e}")))?;
        group.push(NameServerConfig::new(addr, Protocol::Udp));
    }
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = false;
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(2);
    Ok(TokioAsyncResolver::tokio(
        ResolverConfig::from_parts(None, vec![], group),
        opts,
    ))
}

async fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    let conns = Arc::new(Semaphore::new(sh.limits.max_connections));
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                tracing::warn!(error = %e, "egress: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            sh.metrics
                .refused
                .get_or_create(&super::audit::RefusedLabels {
                    reason: "too-many-connections".into(),
                })
                .inc();
            let _ = sock.try_write(&error_response(503, "too-many-connections"));
            continue;
        };
        let _ = sock.set_nodelay(true);
        let sh = sh.clone();
        tokio::spawn(async move {
            sh.metrics.connections_active.inc();
            serve(&sh, sock, peer).await;
            sh.metrics.connections_active.dec();
            drop(permit);
        });
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The name of the header carrying a refusal's reason.
pub const REASON_HEADER: &str = "X-Brainbox-Egress-Reason";

fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let body = format!("{{\"verdict\":\"deny\",\"reason\":\"{reason}\"}}\n");
    format!(
        "HTTP/1.1 {status} {}\r\n{REASON_HEADER}: {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status_text(status),
        body.len()
    )
    .into_bytes()
}

struct Upstream {
    stream: TcpStream,
    host: String,
    port: u16,
    addr: IpAddr,
    _slot: DestSlot,
}

/// One upstream connection counted against its destination's cap.
struct DestSlot {
    sh: Arc<Shared>,
    key: String,
}

impl Drop for DestSlot {
    fn drop(&mut self) {
        let mut m = self.sh.per_dest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
        self.sh.metrics.upstream_active.dec();
    }
}

/// The last decision counted on a connection: rule, verdict, reason.
type CounterKey = (Option<usize>, Verdict, &'static str);

struct Conn<'a> {
    sh: &'a Arc<Shared>,
    client: TcpStream,
    peer: SocketAddr,
    cbuf: BytesMut,
    host: String,
    out: Vec<u8>,
    up: Option<Upstream>,
    rbuf: BytesMut,
    counter: Option<(CounterKey, Counter)>,
}

enum Fail {
    /// Answer with this status and reason, then close.
    Respond(u16, &'static str),
    /// Just close (the exchange is past the point of answering).
    Close,
    /// A reused upstream connection was found closed before answering; the whole request is
    /// still in hand and may be sent once more on a fresh connection.
    Retry,
}

async fn serve(sh: &Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let mut c = Conn {
        sh,
        client,
        peer,
        cbuf: BytesMut::new(),
        host: String::new(),
        out: Vec::new(),
        up: None,
        rbuf: BytesMut::new(),
        counter: None,
    };
    let lim = &sh.limits;
    let mut first = true;
    loop {
        if c.cbuf.is_empty() {
            // Wait without a buffer: an idle connection costs no read buffer.
            let wait = if first {
                lim.header_timeout_ms
            } else {
                lim.idle_timeout_ms
            };
            match timeout(Limits::ms(wait), c.client.readable()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        first = false;
        let deadline = Instant::now() + Limits::ms(lim.header_timeout_ms);
        let info = loop {
            match parse_request(&c.cbuf, lim.max_header_bytes, &mut c.host, &mut c.out) {
                Ok(Some(i)) => break i,
                Ok(None) => {
                    if c.cbuf.capacity() - c.cbuf.len() < 1024 {
                        c.cbuf.reserve(4096);
                    }
                    match timeout_at(deadline, c.client.read_buf(&mut c.cbuf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(_)) => {}
                        Err(_) => {
                            let _ = c
                                .client
                                .write_all(&error_response(408, "header-timeout"))
                                .await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    c.refuse_unparsed(e.status, e.reason).await;
                    return;
                }
            }
        };
        let keep = match info.kind {
            RequestKind::Connect => {
                c.cbuf.advance(info.head_len);
                c.tunnel(&info).await;
                false
            }
            RequestKind::Forward => c.forward(&info).await,
        };
        if !keep {
            return;
        }
    }
}

impl Conn<'_> {
    fn count(&mut self, d: Decision, policy: Option<&Policy>) {
        let key = (d.rule, d.verdict, d.reason);
        if let Some((k, c)) = &self.counter {
            if *k == key {
                c.inc();
                return;
            }
        }
        let dest = policy.and_then(|p| d.rule.and_then(|r| p.rules.get(r)));
        let c = self
            .sh
            .metrics
            .decision(dest.map(|r| &*r.label), d.verdict, d.reason);
        c.inc();
        self.counter = Some((key, c));
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &mut self,
        cur: &Current,
        d: Decision,
        info: Option<&RequestInfo>,
        port: u16,
        addr: Option<IpAddr>,
    ) {
        let policy = cur.policy.as_deref();
        self.count(d, policy);
        let (request, method, path) = match info {
            Some(i) if i.kind == RequestKind::Forward => (
                "http",
                Some(String::from_utf8_lossy(&self.out[..i.method_len]).into_owned()),
                Some(AuditEvent::redact_path(&self.out[i.path.0..i.path.1])),
            ),
            Some(_) => ("connect", None, None),
            None => ("invalid", None, None),
        };
        self.sh.audit.record(AuditEvent {
            kind: "egress_decision",
            time_ms: AuditEvent::now_ms(),
            request,
            verdict: d.verdict.as_str(),
            reason: d.reason,
            host: self.host.clone(),
            port,
            method,
            path,
            addr,
            spiffe_id: cur.id.clone(),
            policy: policy.map(|p| p.name.clone()),
            rule: policy.and_then(|p| d.rule.and_then(|r| p.rules.get(r).map(|r| r.label.clone()))),
            client: self.peer,
            redaction: None,
        });
    }

    /// A request that could not be parsed: audited with what is known (nothing about its target).
    async fn refuse_unparsed(&mut self, status: u16, reason: &'static str) {
        let cur = self.sh.state.current();
        self.host.clear();
        self.audit(&cur, Decision::deny(reason), None, 0, None);
        let _ = self.client.write_all(&error_response(status, reason)).await;
    }

    async fn refuse(&mut self, status: u16, reason: &'static str) {
        let _ = self.client.write_all(&error_response(status, reason)).await;
    }

    /// Resolves (or takes the literal), checks every address against the deciding rule, and dials
    /// a checked one. Returns the decision as the address check left it.
    async fn dial(
        &mut self,
        cur: &Current,
        policy: &Policy,
        mut d: Decision,
        ip: Option<IpAddr>,
        port: u16,
        info: &RequestInfo,
    ) -> Result<Decision, Fail> {
        let lim = &self.sh.limits;
        let rule = d.rule.and_then(|r| policy.rules.get(r));
        let report = rule.is_some_and(|r| r.mode == RuleMode::Report);
        let deadline = Instant::now() + Limits::ms(lim.connect_timeout_ms);
        let addrs: Vec<IpAddr> = match ip {
            Some(ip) => vec![ip],
            None => {
                match timeout_at(deadline, self.sh.resolver.lookup_ip(self.host.as_str())).await {
                    Ok(Ok(l)) => l.iter().collect(),
                    _ => Vec::new(),
                }
            }
        };
        if addrs.is_empty() {
            let d = Decision {
                verdict: Verdict::Deny,
                reason: "resolve-failed",
                rule: d.rule,
            };
            self.audit(cur, d, Some(info), port, None);
            return Err(Fail::Respond(502, "resolve-failed"));
        }
        // Every address must pass: a name that mixes public and private answers is refused whole
        // (that mix is what DNS rebinding looks like).
        for &a in &addrs {
            if let (Some(r), Err(class)) = (d.rule, policy.check_addr(d.rule.unwrap_or(0), a)) {
                let reason = addr_reason(class);
                if report {
                    d = Decision {
                        verdict: Verdict::Report,
                        reason,
                        rule: Some(r),
                    };
                } else {
                    let d = Decision {
                        verdict: Verdict::Deny,
                        reason,
                        rule: Some(r),
                    };
                    self.audit(cur, d, Some(info), port, Some(a));
                    return Err(Fail::Respond(403, reason));
                }
            }
        }
        let key = format!("{}:{port}", self.host);
        {
            let mut m = self.sh.per_dest.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(key.clone()).or_insert(0);
            if *n >= lim.max_per_destination {
                drop(m);
                let d = Decision {
                    verdict: Verdict::Deny,
                    reason: "destination-busy",
                    rule: d.rule,
                };
                self.audit(cur, d, Some(info), port, None);
                return Err(Fail::Respond(503, "destination-busy"));
            }
            *n += 1;
        }
        self.sh.metrics.upstream_active.inc();
        let slot = DestSlot {
            sh: self.sh.clone(),
            key,
        };
        for &a in &addrs {
            if let Ok(Ok(s)) = timeout_at(deadline, TcpStream::connect((a, port))).await {
                let _ = s.set_nodelay(true);
                self.up = Some(Upstream {
                    stream: s,
                    host: self.host.clone(),
                    port,
                    addr: a,
                    _slot: slot,
                });
                return Ok(d);
            }
        }
        let fail = Decision {
            verdict: Verdict::Deny,
            reason: "upstream-connect-failed",
            rule: d.rule,
        };
        self.audit(cur, fail, Some(info), port, addrs.first().copied());
        Err(Fail::Respond(502, "upstream-connect-failed"))
    }

    /// One absolute-form request; returns whether to keep the client connection.
    async fn forward(&mut self, info: &RequestInfo) -> bool {
        let cur = self.sh.state.current();
        let (policy, _) = match cur.gate() {
            Ok(x) => x,
            Err(reason) => {
                self.audit(&cur, Decision::deny(reason), Some(info), info.port, None);
                self.refuse(403, reason).await;
                return false;
            }
        };
        let policy = policy.clone();
        let mut d = policy.decide(&Target {
            host: &self.host,
            ip: info.host_ip,
            port: info.port,
            http: Some((
                &self.out[..info.method_len],
                &self.out[info.path.0..info.path_no_query_end],
            )),
        });
        if d.verdict == Verdict::Deny {
            self.audit(&cur, d, Some(info), info.port, None);
            self.refuse(403, d.reason).await;
            return false;
        }
        let reuse = self
            .up
            .as_ref()
            .is_some_and(|u| u.port == info.port && u.host == self.host);
        let mut reused = false;
        if reuse {
            let addr = self.up.as_ref().map(|u| u.addr);
            if let (Some(a), Some(r)) = (addr, d.rule) {
                match policy.check_addr(r, a) {
                    Ok(()) => reused = true,
                    Err(_) => self.up = None,
                }
            }
        } else {
            self.up = None;
        }
        if !reused {
            match self
                .dial(&cur, &policy, d, info.host_ip, info.port, info)
                .await
            {
                Ok(d2) => d = d2,
                Err(Fail::Respond(s, r)) => {
                    self.refuse(s, r).await;
                    return false;
                }
                Err(Fail::Close | Fail::Retry) => return false,
            }
        }
        let addr = self.up.as_ref().map(|u| u.addr);
        self.audit(&cur, d, Some(info), info.port, addr);
        self.cbuf.advance(info.head_len);
        let mut result = self.exchange(info, reused).await;
        if matches!(result, Err(Fail::Retry)) {
            // The usual race with an upstream's keep-alive timeout: dial again, send again, once.
            self.up = None;
            result = match self
                .dial(&cur, &policy, d, info.host_ip, info.port, info)
                .await
            {
                Ok(_) => self.resend(info).await,
                Err(f) => Err(f),
            };
        }
        match result {
            Ok(keep) => keep && info.keep_alive,
            Err(Fail::Respond(s, r)) => {
                self.up = None;
                self.refuse(s, r).await;
                false
            }
            Err(Fail::Close) => {
                self.up = None;
                false
            }
            Err(Fail::Retry) => {
                self.up = None;
                self.refuse(502, "upstream-closed").await;
                false
            }
        }
    }

    /// Sends the held request again on a fresh connection (after [`Fail::Retry`]).
    async fn resend(&mut self, info: &RequestInfo) -> Result<bool, Fail> {
        let lim = self.sh.limits.clone();
        let Some(up) = self.up.as_mut() else {
            return Err(Fail::Close);
        };
        if up.stream.write_all(&self.out).await.is_err() {
            return Err(Fail::Respond(502, "upstream-closed"));
        }
        self.relay_response(info.is_head, &lim).await
    }

    /// Sends the request (head and body) and relays the response. When a reused connection turns
    /// out closed before any response byte and the whole request is still in `out`, asks the
    /// caller to retry on a fresh connection.
    async fn exchange(&mut self, info: &RequestInfo, reused: bool) -> Result<bool, Fail> {
        let lim = self.sh.limits.clone();
        let head_len = self.out.len();
        let mut body_done = false;
        match info.body {
            BodyFraming::None | BodyFraming::UntilClose => body_done = true,
            BodyFraming::Length(n) => {
                let have = (self.cbuf.len() as u64).min(n) as usize;
                self.out.extend_from_slice(&self.cbuf[..have]);
                self.cbuf.advance(have);
                body_done = have as u64 == n;
            }
            BodyFraming::Chunked => {}
        }
        let Some(up) = self.up.as_mut() else {
            return Err(Fail::Close);
        };
        if up.stream.write_all(&self.out).await.is_err() {
            if reused && body_done {
                return Err(Fail::Retry);
            }
            return Err(Fail::Close);
        }
        if !body_done {
            let sent = (self.out.len() - head_len) as u64;
            self.send_body(info, sent).await?;
        }
        match self.relay_response(info.is_head, &lim).await {
            Err(Fail::Respond(502, "upstream-closed")) if reused && body_done => Err(Fail::Retry),
            r => r,
        }
    }

    async fn send_body(&mut self, info: &RequestInfo, sent: u64) -> Result<(), Fail> {
        let idle = Limits::ms(self.sh.limits.idle_timeout_ms);
        let Some(up) = self.up.as_mut() else {
            return Err(Fail::Close);
        };
        match info.body {
            BodyFraming::Length(n) => {
                let mut left = n - sent;
                while left > 0 {
                    if self.cbuf.is_empty() {
                        self.cbuf.reserve(16 * 1024);
                        match timeout(idle, self.client.read_buf(&mut self.cbuf)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return Err(Fail::Close),
                        }
                    }
                    let take = (self.cbuf.len() as u64).min(left) as usize;
                    up.stream
                        .write_all(&self.cbuf[..take])
                        .await
                        .map_err(|_| Fail::Close)?;
                    self.cbuf.advance(take);
                    left -= take as u64;
                }
            }
            BodyFraming::Chunked => {
                let mut scan = ChunkedScanner::default();
                loop {
                    if self.cbuf.is_empty() {
                        self.cbuf.reserve(16 * 1024);
                        match timeout(idle, self.client.read_buf(&mut self.cbuf)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => return Err(Fail::Close),
                        }
                    }
                    match scan.feed(&self.cbuf) {
                        Ok(Some(end)) => {
                            up.stream
                                .write_all(&self.cbuf[..end])
                                .await
                                .map_err(|_| Fail::Close)?;
                            self.cbuf.advance(end);
                            return Ok(());
                        }
                        Ok(None) => {
                            up.stream
                                .write_all(&self.cbuf)
                                .await
                                .map_err(|_| Fail::Close)?;
                            self.cbuf.clear();
                        }
                        Err(_) => return Err(Fail::Close),
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Relays response heads and the final response's body; returns whether both sides may be
    /// kept for another request.
    async fn relay_response(&mut self, is_head: bool, lim: &Limits) -> Result<bool, Fail> {
        let wait = Limits::ms(lim.upstream_timeout_ms);
        let Some(up) = self.up.as_mut() else {
            return Err(Fail::Close);
        };
        let rbuf = &mut self.rbuf;
        let client = &mut self.client;
        let mut sent_any = false;
        loop {
            let resp = loop {
                match parse_response(rbuf, lim.max_response_header_bytes, is_head) {
                    Ok(Some(r)) => break r,
                    Ok(None) => {
                        if rbuf.capacity() - rbuf.len() < 2048 {
                            rbuf.reserve(16 * 1024);
                        }
                        match timeout(wait, up.stream.read_buf(rbuf)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            Ok(_) if sent_any => return Err(Fail::Close),
                            Ok(_) => return Err(Fail::Respond(502, "upstream-closed")),
                            Err(_) if sent_any => return Err(Fail::Close),
                            Err(_) => return Err(Fail::Respond(504, "upstream-timeout")),
                        }
                    }
                    Err(e) if sent_any => {
                        let _ = e;
                        return Err(Fail::Close);
                    }
                    Err(e) => return Err(Fail::Respond(e.status, e.reason)),
                }
            };
            if (100..200).contains(&resp.status) {
                if resp.status == 101 {
                    return Err(Fail::Close);
                }
                client
                    .write_all(&rbuf[..resp.head_len])
                    .await
                    .map_err(|_| Fail::Close)?;
                rbuf.advance(resp.head_len);
                sent_any = true;
                continue;
            }
            let mut keep = !resp.close;
            match resp.body {
                BodyFraming::None => {
                    client
                        .write_all(&rbuf[..resp.head_len])
                        .await
                        .map_err(|_| Fail::Close)?;
                    rbuf.advance(resp.head_len);
                }
                BodyFraming::Length(n) => {
                    let total = resp.head_len as u64 + n;
                    if rbuf.len() as u64 >= total {
                        let t = total as usize;
                        client
                            .write_all(&rbuf[..t])
                            .await
                            .map_err(|_| Fail::Close)?;
                        rbuf.advance(t);
                    } else {
                        let mut left = total - rbuf.len() as u64;
                        client.write_all(rbuf).await.map_err(|_| Fail::Close)?;
                        rbuf.clear();
                        while left > 0 {
                            rbuf.reserve(16 * 1024);
                            match timeout(wait, up.stream.read_buf(rbuf)).await {
                                Ok(Ok(n)) if n > 0 => {}
                                _ => return Err(Fail::Close),
                            }
                            let take = (rbuf.len() as u64).min(left) as usize;
                            client
                                .write_all(&rbuf[..take])
                                .await
                                .map_err(|_| Fail::Close)?;
                            rbuf.advance(take);
                            left -= take as u64;
                        }
                    }
                }
                BodyFraming::Chunked => {
                    let mut scan = ChunkedScanner::default();
                    let mut start = resp.head_len;
                    loop {
                        match scan.feed(&rbuf[start..]) {
                            Ok(Some(end)) => {
                                let t = start + end;
                                client
                                    .write_all(&rbuf[..t])
                                    .await
                                    .map_err(|_| Fail::Close)?;
                                rbuf.advance(t);
                                break;
                            }
                            Ok(None) => {
                                client.write_all(rbuf).await.map_err(|_| Fail::Close)?;
                                rbuf.clear();
                                start = 0;
                                rbuf.reserve(16 * 1024);
                                match timeout(wait, up.stream.read_buf(rbuf)).await {
                                    Ok(Ok(n)) if n > 0 => {}
                                    _ => return Err(Fail::Close),
                                }
                            }
                            Err(_) => return Err(Fail::Close),
                        }
                    }
                }
                BodyFraming::UntilClose => {
                    client.write_all(rbuf).await.map_err(|_| Fail::Close)?;
                    rbuf.clear();
                    loop {
                        rbuf.reserve(16 * 1024);
                        match timeout(wait, up.stream.read_buf(rbuf)).await {
                            Ok(Ok(n)) if n > 0 => {}
                            _ => break,
                        }
                        client.write_all(rbuf).await.map_err(|_| Fail::Close)?;
                        rbuf.clear();
                    }
                    keep = false;
                }
            }
            if !rbuf.is_empty() {
                // An upstream that sends more than one response per request is not reused.
                rbuf.clear();
                keep = false;
            }
            if !keep {
                self.up = None;
            }
            return Ok(keep);
        }
    }

    /// A CONNECT tunnel.
    async fn tunnel(&mut self, info: &RequestInfo) {
        let cur = self.sh.state.current();
        let policy = match cur.gate() {
            Ok((p, _)) => p.clone(),
            Err(reason) => {
                self.audit(&cur, Decision::deny(reason), Some(info), info.port, None);
                self.refuse(403, reason).await;
                return;
            }
        };
        let d = policy.decide(&Target {
            host: &self.host,
            ip: info.host_ip,
            port: info.port,
            http: None,
        });
        if d.verdict == Verdict::Deny {
            self.audit(&cur, d, Some(info), info.port, None);
            self.refuse(403, d.reason).await;
            return;
        }
        let mut d = match self
            .dial(&cur, &policy, d, info.host_ip, info.port, info)
            .await
        {
            Ok(d) => d,
            Err(Fail::Respond(s, r)) => {
                self.refuse(s, r).await;
                return;
            }
            Err(Fail::Close | Fail::Retry) => return,
        };
        let Some(up) = self.up.take() else { return };
        if self
            .client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let rule = d.rule.and_then(|r| policy.rules.get(r));
        if rule.is_some_and(|r| r.tunnel == TunnelKind::Tls) {
            let failure = self.check_client_hello(info).await;
            if let Some(reason) = failure {
                if rule.is_some_and(|r| r.mode == RuleMode::Report) {
                    d = Decision {
                        verdict: Verdict::Report,
                        reason,
                        rule: d.rule,
                    };
                } else {
                    let deny = Decision {
                        verdict: Verdict::Deny,
                        reason,
                        rule: d.rule,
                    };
                    self.audit(&cur, deny, Some(info), info.port, Some(up.addr));
                    return;
                }
            }
        }
        self.audit(&cur, d, Some(info), info.port, Some(up.addr));
        let mut upstream = up.stream;
        if !self.cbuf.is_empty() && upstream.write_all(&self.cbuf).await.is_err() {
            return;
        }
        self.cbuf = BytesMut::new();
        let idle = Limits::ms(self.sh.limits.tunnel_idle_timeout_ms);
        splice(&mut self.client, &mut upstream, idle, self.sh.epoch).await;
        drop(up._slot);
    }

    /// Waits for the tunnel's ClientHello and returns why it is refused, if it is.
    async fn check_client_hello(&mut self, info: &RequestInfo) -> Option<&'static str> {
        let lim = &self.sh.limits;
        let deadline = Instant::now() + Limits::ms(lim.client_hello_timeout_ms);
        // The hello may span records; allow for their headers on top of the message bound.
        let cap = lim.max_client_hello_bytes + lim.max_client_hello_bytes / 64 * 5 + 1024;
        let hello = loop {
            match parse_client_hello(&self.cbuf, lim.max_client_hello_bytes) {
                Ok(Some(h)) => break h,
                Ok(None) => {
                    if self.cbuf.len() >= cap {
                        return Some("client-hello-too-large");
                    }
                    self.cbuf.reserve(4096.min(cap - self.cbuf.len()).max(1));
                    match timeout_at(deadline, self.client.read_buf(&mut self.cbuf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        Ok(_) => return Some("client-closed"),
                        Err(_) => return Some("client-hello-timeout"),
                    }
                }
                Err(e) => return Some(e.reason()),
            }
        };
        if hello.ech {
            return Some("ech-refused");
        }
        match (hello.sni, info.host_ip) {
            (None, Some(_)) => None,
            (None, None) => Some("sni-missing"),
            (Some(_), Some(_)) => Some("sni-mismatch"),
            (Some(s), None) if s == self.host => None,
            (Some(_), None) => Some("sni-mismatch"),
        }
    }
}

/// Copies both ways until both sides finish or nothing moves for `idle`.
async fn splice(a: &mut TcpStream, b: &mut TcpStream, idle: Duration, epoch: Instant) {
    let last = AtomicU64::new(0);
    last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let both = async {
        tokio::join!(
            one_way(&mut ar, &mut bw, &last, epoch),
            one_way(&mut br, &mut aw, &last, epoch)
        );
    };
    let watchdog = async {
        loop {
            tokio::time::sleep(idle / 4 + Duration::from_millis(1)).await;
            let now = epoch.elapsed().as_millis() as u64;
            if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle.as_millis() as u64 {
                return;
            }
        }
    };
    tokio::select! {
        _ = both => {}
        _ = watchdog => {}
    }
}

async fn one_way(
    r: &mut tokio::net::tcp::ReadHalf<'_>,
    w: &mut tokio::net::tcp::WriteHalf<'_>,
    last: &AtomicU64,
    epoch: Instant,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}
