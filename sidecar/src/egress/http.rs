//! HTTP/1.1 request heads as a forward proxy sees them, parsed strictly with `httparse`.
//!
//! Why not hyper's server here: a proxy must refuse the ambiguous forms that make request
//! smuggling possible (both `Content-Length` and `Transfer-Encoding`, repeated lengths, bare LF
//! line ends, an absolute-form target whose authority differs from `Host`), while hyper quietly
//! normalises several of them. Parsing the head ourselves makes each refusal exact and lets the
//! proxy rewrite the head into one reused buffer and pass bodies through without re-framing, which
//! keeps the per-request cost near one read and one write per direction.

use std::net::IpAddr;

/// At most this many header lines per head; more is refused.
pub const MAX_HEADERS: usize = 64;

/// Why a head was refused; `reason` is the machine-readable reason sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({status})")]
pub struct HttpError {
    /// HTTP status to answer with.
    pub status: u16,
    /// Stable reason token.
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> HttpError {
    HttpError {
        status: 400,
        reason,
    }
}

/// How a message body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `CONNECT host:port`.
    Connect,
    /// An absolute-form `http://` request to forward.
    Forward,
}

/// A parsed request head. Host goes to the caller's buffer; the rewritten head (origin-form) to
/// the caller's output buffer, so a request allocates nothing once the buffers have grown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// CONNECT or forward.
    pub kind: RequestKind,
    /// Destination port.
    pub port: u16,
    /// The host when it is a literal IP.
    pub host_ip: Option<IpAddr>,
    /// Bytes of the head in the input.
    pub head_len: usize,
    /// Request body framing.
    pub body: BodyFraming,
    /// Whether the client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// The method's length at the start of the rewritten head (forward only).
    pub method_len: usize,
    /// The origin-form path (with query) in the rewritten head: `out[path.0..path.1]`.
    pub path: (usize, usize),
    /// The path without its query in the rewritten head.
    pub path_no_query_end: usize,
    /// `HEAD` requests have responses without bodies.
    pub is_head: bool,
}

/// Parses one request head from `buf`. `Ok(None)`: incomplete, read more (unless `buf` already
/// holds `max_head` bytes, which is an error). On success, `host` holds the lower-case host and,
/// for forward requests, `out` the head to send upstream.
pub fn parse_request(
    buf: &[u8],
    max_head: usize,
    host: &mut String,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, HttpError> {
    let too_large = HttpError {
        status: 431,
        reason: "header-too-large",
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                return Err(too_large);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(too_large),
        Err(_) => return Err(bad("malformed-request")),
    };
    if head_len > max_head {
        return Err(too_large);
    }
    // httparse accepts bare LF line ends; a back end may not agree on where the head ends.
    if has_bare_lf(&buf[..head_len]) {
        return Err(bad("bare-lf"));
    }
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("");
    let minor = req.version.unwrap_or(1);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut host_header: Option<&[u8]> = None;
    let mut close = minor == 0;
    let mut conn_tokens: [&[u8]; 8] = [b""; 8];
    let mut n_tokens = 0;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(bad("duplicate-content-length"));
            }
            content_length = Some(parse_length(h.value).ok_or(bad("bad-content-length"))?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te_seen {
                return Err(bad("duplicate-transfer-encoding"));
            }
            te_seen = true;
            if !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                return Err(bad("bad-transfer-encoding"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if host_header.is_some() {
                return Err(bad("duplicate-host"));
            }
            host_header = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            return Err(bad("upgrade-not-supported"));
        } else if name.eq_ignore_ascii_case(b"connection")
            || name.eq_ignore_ascii_case(b"proxy-connection")
        {
            for tok in h.value.split(|&b| b == b',').map(trim) {
                if tok.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                } else if !tok.is_empty() {
                    if n_tokens == conn_tokens.len() {
                        return Err(bad("too-many-connection-options"));
                    }
                    conn_tokens[n_tokens] = tok;
                    n_tokens += 1;
                }
            }
        }
    }
    if chunked && content_length.is_some() {
        return Err(bad("content-length-with-transfer-encoding"));
    }
    if chunked && minor == 0 {
        return Err(bad("transfer-encoding-in-http-1.0"));
    }
    let body = match (chunked, content_length) {
        (true, _) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    host.clear();
    if method == "CONNECT" {
        let (port, host_ip) = parse_authority(target.as_bytes(), None, host)?;
        if let Some(hv) = host_header {
            let mut h2 = String::new();
            let (p2, _) = parse_authority(hv, Some(port), &mut h2)?;
            if h2 != *host || p2 != port {
                return Err(bad("host-mismatch"));
            }
        }
        if body != BodyFraming::None {
            return Err(bad("connect-with-body"));
        }
        return Ok(Some(RequestInfo {
            kind: RequestKind::Connect,
            port,
            host_ip,
            head_len,
            body,
            keep_alive: false,
            method_len: 0,
            path: (0, 0),
            path_no_query_end: 0,
            is_head: false,
        }));
    }
    let Some(rest) = strip_prefix_ci(target.as_bytes(), b"http://") else {
        if target.starts_with('/') {
            return Err(bad("not-a-proxy-request"));
        }
        return Err(bad("scheme-not-supported"));
    };
    let split = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains(&b'@') {
        return Err(bad("userinfo-in-url"));
    }
    let (port, host_ip) = parse_authority(authority, Some(80), host)?;
    let Some(hv) = host_header else {
        return Err(bad("missing-host"));
    };
    {
        // Compare without allocating: parse Host into a small stack copy.
        let mut h2 = String::new();
        let (p2, _) = parse_authority(hv, Some(80), &mut h2)?;
        if h2 != *host || p2 != port {
            return Err(bad("host-mismatch"));
        }
    }
    if path.contains(&b'#') {
        return Err(bad("fragment-in-url"));
    }
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    let p0 = out.len();
    if !path.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    let p1 = out.len();
    let q = out[p0..p1]
        .iter()
        .position(|&b| b == b'?')
        .map_or(p1, |i| p0 + i);
    out.extend_from_slice(if minor == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let hop = [
            &b"connection"[..],
            b"proxy-connection",
            b"keep-alive",
            b"proxy-authorization",
            b"proxy-authenticate",
            b"te",
            b"trailer",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
            || conn_tokens[..n_tokens]
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t));
        if hop {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Some(RequestInfo {
        kind: RequestKind::Forward,
        port,
        host_ip,
        head_len,
        body,
        keep_alive: !close,
        method_len: method.len(),
        path: (p0, p1),
        path_no_query_end: q,
        is_head: method == "HEAD",
    }))
}

fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &v[s..e.max(s)]
}

fn strip_prefix_ci<'a>(v: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    (v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p)).then(|| &v[p.len()..])
}

/// A decimal length of at most 18 digits (no sign, no spaces inside, no list).
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Parses `host[:port]` or `[v6][:port]` into a lower-case host (IPv6 without brackets) and port.
/// `default_port` is used when the port is absent; `None` makes the port required.
pub fn parse_authority(
    a: &[u8],
    default_port: Option<u16>,
    host: &mut String,
) -> Result<(u16, Option<IpAddr>), HttpError> {
    let a = trim(a);
    let (h, port) = if let Some(rest) = a.strip_prefix(b"[") {
        let end = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(bad("bad-host"))?;
        let h = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after {
            [] => None,
            [b':', p @ ..] => Some(p),
            _ => return Err(bad("bad-host")),
        };
        (h, port)
    } else {
        match a.iter().position(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
                return Err(bad("bad-port"));
            }
            let n = p.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            u16::try_from(n)
                .ok()
                .filter(|&n| n != 0)
                .ok_or(bad("bad-port"))?
        }
        None => default_port.ok_or(bad("missing-port"))?,
    };
    if h.is_empty() || h.len() > 253 {
        return Err(bad("bad-host"));
    }
    let h = h.strip_suffix(b".").unwrap_or(h);
    let s = std::str::from_utf8(h).map_err(|_| bad("bad-host"))?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        host.push_str(&ip.to_string());
        return Ok((port, Some(ip)));
    }
    let ok = !s.is_empty()
        && s.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        return Err(bad("bad-host"));
    }
    for b in s.bytes() {
        host.push(char::from(b.to_ascii_lowercase()));
    }
    Ok((port, None))
}

/// A parsed response head: its length, status and body framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Bytes of the head.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// Body framing (already accounting for `HEAD`, 1xx, 204 and 304).
    pub body: BodyFraming,
    /// The upstream asked to close after this response.
    pub close: bool,
}

/// Parses one response head; `Ok(None)` means read more.
pub fn parse_response(
    buf: &[u8],
    max_head: usize,
    request_was_head: bool,
) -> Result<Option<ResponseInfo>, HttpError> {
    let bad_gw = |reason| HttpError {
        status: 502,
        reason,
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        _ => return Err(bad_gw("bad-upstream-response")),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut te: Option<bool> = None;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(bad_gw("bad-upstream-response"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad_gw("bad-upstream-response"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = h.value.split(|&b| b == b',').next_back().map(trim);
            te = Some(last.is_some_and(|l| l.eq_ignore_ascii_case(b"chunked")));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for tok in h.value.split(|&b| b == b',').map(trim) {
                if tok.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    let body = if request_was_head || (100..200).contains(&status) || status == 204 || status == 304
    {
        BodyFraming::None
    } else {
        match (te, length) {
            (Some(true), _) => BodyFraming::Chunked,
            (Some(false), _) => BodyFraming::UntilClose,
            (None, Some(0)) => BodyFraming::None,
            (None, Some(n)) => BodyFraming::Length(n),
            (None, None) => BodyFraming::UntilClose,
        }
    };
    if body == BodyFraming::UntilClose {
        close = true;
    }
    Ok(Some(ResponseInfo {
        head_len,
        status,
        body,
        close,
    }))
}

/// Finds the end of a chunked body as it streams past, without copying it: the proxy forwards
/// chunked bodies as they are and only needs to know where they stop.
#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    state: ChunkState,
    size: u64,
    digits: u8,
    line: u16,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// The longest chunk extension or trailer line accepted.
const MAX_LINE: u16 = 4096;

impl ChunkedScanner {
    /// Consumes `buf`; returns `Ok(Some(n))` when the body ends after `n` bytes of it, `Ok(None)`
    /// when all of `buf` belongs to the body and more is needed.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        let err = Err(bad("bad-chunked-body"));
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                ChunkState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits >= 15 {
                            return err;
                        }
                        let d = match b {
                            b'0'..=b'9' => b - b'0',
                            b'a'..=b'f' => b - b'a' + 10,
                            _ => b - b'A' + 10,
                        };
                        self.size = self.size * 16 + u64::from(d);
                        self.digits += 1;
                    }
                    b';' if self.digits > 0 => {
                        self.state = ChunkState::Ext;
                        self.line = 0;
                    }
                    b'\r' if self.digits > 0 => self.state = ChunkState::SizeLf,
                    _ => return err,
                },
                ChunkState::Ext => match b {
                    b'\r' => self.state = ChunkState::SizeLf,
                    b'\n' => return err,
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return err;
                        }
                    }
                },
                ChunkState::SizeLf => {
                    if b != b'\n' {
                        return err;
                    }
                    self.state = if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    };
                }
                ChunkState::Data => {
                    let take = u64::min(self.size, (buf.len() - i) as u64);
                    self.size -= take;
                    i += take as usize;
                    if self.size == 0 {
                        self.state = ChunkState::DataCr;
                    }
                    continue;
                }
                ChunkState::DataCr => {
                    if b != b'\r' {
                        return err;
                    }
                    self.state = ChunkState::DataLf;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return err;
                    }
                    self.state = ChunkState::Size;
                    self.digits = 0;
                    self.size = 0;
                }
                ChunkState::TrailerStart => match b {
                    b'\r' => self.state = ChunkState::EndLf,
                    b'\n' => return err,
                    _ => {
                        self.state = ChunkState::TrailerLine;
                        self.line = 1;
                    }
                },
                ChunkState::TrailerLine => match b {
                    b'\r' => self.state = ChunkState::TrailerLf,
                    b'\n' => return err,
                    _ => {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return err;
                        }
                    }
                },
                ChunkState::TrailerLf => {
                    if b != b'\n' {
                        return err;
                    }
                    self.state = ChunkState::TrailerStart;
                }
                ChunkState::EndLf => {
                    if b != b'\n' {
                        return err;
                    }
                    self.state = ChunkState::Done;
                    return Ok(Some(i + 1));
                }
                ChunkState::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        if self.state == ChunkState::Done {
            return Ok(Some(0));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<RequestInfo>, HttpError> {
        let mut h = String::new();
        let mut o = Vec::new();
        parse_request(s.as_bytes(), 16384, &mut h, &mut o)
    }

    fn rewrite(s: &str) -> (RequestInfo, String, String) {
        let mut h = String::new();
        let mut o = Vec::new();
        let r = parse_request(s.as_bytes(), 16384, &mut h, &mut o)
            .unwrap()
            .unwrap();
        (r, h, String::from_utf8(o).unwrap())
    }

    #[test]
    fn absolute_form_is_rewritten_to_origin_form() {
        let (r, h, o) = rewrite(
            "GET http://Api.Example.com:8080/v1/x?q=1 HTTP/1.1\r\nHost: api.example.com:8080\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nConnection: x-hop\r\n\
             X-Hop: 1\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(h, "api.example.com");
        assert_eq!(r.port, 8080);
        assert!(r.keep_alive);
        assert_eq!(
            o,
            "GET /v1/x?q=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nAccept: */*\r\n\r\n"
        );
        assert_eq!(&o[r.path.0..r.path_no_query_end], "/v1/x");
        let (r, _, o) = rewrite("GET http://a.b HTTP/1.0\r\nHost: a.b:80\r\n\r\n");
        assert!(o.starts_with("GET / HTTP/1.0\r\n"));
        assert!(!r.keep_alive);
    }

    #[test]
    fn connect_is_parsed() {
        let r = parse("CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.kind, RequestKind::Connect);
        assert_eq!(r.port, 443);
        let r = parse("CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(
            parse("CONNECT a.b HTTP/1.1\r\n\r\n").unwrap_err().reason,
            "missing-port"
        );
    }

    #[test]
    fn smuggling_forms_are_refused() {
        for (req, reason) in [
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                "content-length-with-transfer-encoding",
            ),
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                "duplicate-content-length",
            ),
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                "duplicate-content-length",
            ),
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: +5\r\n\r\n",
                "bad-content-length",
            ),
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "bad-transfer-encoding",
            ),
            (
                "POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                "duplicate-transfer-encoding",
            ),
            (
                "POST http://a.b/ HTTP/1.0\r\nHost: a.b\r\nTransfer-Encoding: chunked\r\n\r\n",
                "transfer-encoding-in-http-1.0",
            ),
            ("GET http://a.b/ HTTP/1.1\r\nHost: evil.b\r\n\r\n", "host-mismatch"),
            ("GET http://a.b/ HTTP/1.1\r\nHost: a.b:81\r\n\r\n", "host-mismatch"),
            ("GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nHost: a.b\r\n\r\n", "duplicate-host"),
            ("GET http://a.b/ HTTP/1.1\r\n\r\n", "missing-host"),
            ("GET http://a.b/ HTTP/1.1\nHost: a.b\n\n", "bare-lf"),
            ("GET / HTTP/1.1\r\nHost: a.b\r\n\r\n", "not-a-proxy-request"),
            ("GET https://a.b/ HTTP/1.1\r\nHost: a.b\r\n\r\n", "scheme-not-supported"),
            ("GET http://u:p@a.b/ HTTP/1.1\r\nHost: a.b\r\n\r\n", "userinfo-in-url"),
            ("GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nUpgrade: websocket\r\n\r\n", "upgrade-not-supported"),
            ("GET http://a b/ HTTP/1.1\r\nHost: a.b\r\n\r\n", "malformed-request"),
            ("GET http://a.b:0/ HTTP/1.1\r\nHost: a.b:0\r\n\r\n", "bad-port"),
            ("GET http://a.b:99999/ HTTP/1.1\r\nHost: a.b\r\n\r\n", "bad-port"),
            ("GET http://a%2eb/ HTTP/1.1\r\nHost: a%2eb\r\n\r\n", "bad-host"),
            ("GET http://a.b/x#f HTTP/1.1\r\nHost: a.b\r\n\r\n", "fragment-in-url"),
            (
                "CONNECT a.b:443 HTTP/1.1\r\nHost: c.d:443\r\n\r\n",
                "host-mismatch",
            ),
            (
                "CONNECT a.b:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
                "connect-with-body",
            ),
        ] {
            assert_eq!(parse(req).unwrap_err().reason, reason, "{req:?}");
        }
    }

    #[test]
    fn framing_and_limits() {
        let r = parse("POST http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.body, BodyFraming::Length(12));
        assert_eq!(parse("GET http://a.b/ HTTP/1.1\r\nHo").unwrap(), None);
        let big = format!(
            "GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nX: {}\r\n\r\n",
            "a".repeat(20000)
        );
        assert_eq!(parse(&big).unwrap_err().status, 431);
        let many = format!(
            "GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\n{}\r\n",
            "X: y\r\n".repeat(70)
        );
        assert_eq!(parse(&many).unwrap_err().status, 431);
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            1000,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, BodyFraming::Length(3));
        assert!(!r.close);
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 1000, true)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, BodyFraming::None);
        let r = parse_response(b"HTTP/1.1 200 OK\r\n\r\n", 1000, false)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, BodyFraming::UntilClose);
        assert!(r.close);
        assert!(parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            1000,
            false
        )
        .is_err());
    }

    #[test]
    fn chunked_scanner_finds_the_end_across_splits() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut s = ChunkedScanner::default();
            let (a, b) = body.split_at(split);
            let end = match s.feed(a).unwrap() {
                Some(n) => n,
                None => a.len() + s.feed(b).unwrap().unwrap(),
            };
            assert_eq!(&body[end..], b"NEXT", "split {split}");
        }
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki",
            b"4\r\nWikiXX",
            b"ffffffffffffffff\r\n",
        ] {
            assert!(ChunkedScanner::default().feed(bad).is_err(), "{bad:?}");
        }
    }
}
