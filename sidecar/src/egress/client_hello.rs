//! Reads the server name from a TLS ClientHello without terminating TLS.
//!
//! The proxy holds a tunnel's first bytes until the whole ClientHello has arrived (it may span
//! several records), reads its `server_name`, and only then lets them through. Anything that does
//! not parse as exactly one well-formed ClientHello is refused: the point is that the name the
//! agent asked the proxy for is the name the TLS session is for.

/// What the ClientHello says about the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` in `server_name`, lower-case, without a trailing dot.
    pub sni: Option<String>,
    /// The hello offers Encrypted Client Hello, whose inner name the proxy cannot see.
    pub ech: bool,
}

/// Why a tunnel's first bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The bytes are not a TLS handshake record.
    #[error("not-tls")]
    NotTls,
    /// The ClientHello is malformed.
    #[error("bad-client-hello")]
    Malformed,
    /// The ClientHello is larger than the proxy accepts.
    #[error("client-hello-too-large")]
    TooLarge,
}

impl HelloError {
    /// The reason token.
    pub fn reason(self) -> &'static str {
        match self {
            HelloError::NotTls => "not-tls",
            HelloError::Malformed => "bad-client-hello",
            HelloError::TooLarge => "client-hello-too-large",
        }
    }
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;

/// Parses the ClientHello at the start of `buf`. `Ok(None)`: incomplete, read more. `max` bounds
/// the handshake message size.
pub fn parse_client_hello(buf: &[u8], max: usize) -> Result<Option<ClientHello>, HelloError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != HANDSHAKE {
        return Err(HelloError::NotTls);
    }
    // Reassemble the handshake message from as many records as it takes.
    let mut msg: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(hdr) = buf.get(pos..pos + 5) else {
            return Ok(None);
        };
        if hdr[0] != HANDSHAKE || hdr[1] != 3 {
            return Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed
            });
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        if len == 0 || len > 16384 {
            return Err(HelloError::Malformed);
        }
        let Some(frag) = buf.get(pos + 5..pos + 5 + len) else {
            // Refuse early once the declared size already exceeds the bound.
            if msg.len() + len > max + 4 {
                return Err(HelloError::TooLarge);
            }
            return Ok(None);
        };
        msg.extend_from_slice(frag);
        pos += 5 + len;
        if msg.len() >= 4 {
            if msg[0] != CLIENT_HELLO {
                return Err(HelloError::Malformed);
            }
            let mlen =
                (usize::from(msg[1]) << 16) | (usize::from(msg[2]) << 8) | usize::from(msg[3]);
            if mlen > max {
                return Err(HelloError::TooLarge);
            }
            if msg.len() >= 4 + mlen {
                // A record must not carry more than the ClientHello (nothing else may precede
                // the server's answer).
                if msg.len() != 4 + mlen {
                    return Err(HelloError::Malformed);
                }
                return parse_body(&msg[4..]).map(Some);
            }
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.b.len() < n {
            return Err(HelloError::Malformed);
        }
        let (a, b) = self.b.split_at(n);
        self.b = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader { b: body };
    let _version = r.u16()?;
    r.take(32)?; // random
    let sid = r.vec8()?;
    if sid.len() > 32 {
        return Err(HelloError::Malformed);
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed);
    }
    let comp = r.vec8()?;
    if comp.is_empty() {
        return Err(HelloError::Malformed);
    }
    let mut hello = ClientHello {
        sni: None,
        ech: false,
    };
    if r.b.is_empty() {
        return Ok(hello);
    }
    let exts = r.vec16()?;
    if !r.b.is_empty() {
        return Err(HelloError::Malformed);
    }
    let mut e = Reader { b: exts };
    let mut seen_sni = false;
    while !e.b.is_empty() {
        let typ = e.u16()?;
        let data = e.vec16()?;
        match typ {
            EXT_SERVER_NAME => {
                if seen_sni {
                    return Err(HelloError::Malformed);
                }
                seen_sni = true;
                hello.sni = parse_sni(data)?;
            }
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_sni(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader { b: data };
    let list = r.vec16()?;
    if !r.b.is_empty() {
        return Err(HelloError::Malformed);
    }
    let mut l = Reader { b: list };
    let mut name = None;
    while !l.b.is_empty() {
        let typ = l.u8()?;
        let v = l.vec16()?;
        if typ != 0 {
            continue;
        }
        if name.is_some() || v.is_empty() || v.len() > 253 {
            return Err(HelloError::Malformed);
        }
        let v = v.strip_suffix(b".").unwrap_or(v);
        // A DNS name: 1-63 byte labels, no empty one (`.`, `a..b`, `.a` are not names; an
        // empty SNI must never reach the CONNECT-host comparison).
        if v.is_empty()
            || v.split(|b| *b == b'.')
                .any(|label| label.is_empty() || label.len() > 63)
            || !v
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
        {
            return Err(HelloError::Malformed);
        }
        name = Some(
            v.iter()
                .map(|b| char::from(b.to_ascii_lowercase()))
                .collect(),
        );
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with the given extensions, in records of at most `rec` bytes.
    pub(crate) fn hello(exts: &[(u16, Vec<u8>)], rec: usize) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01]);
        body.extend([1, 0]);
        let mut e = Vec::new();
        for (t, d) in exts {
            e.extend(t.to_be_bytes());
            e.extend((d.len() as u16).to_be_bytes());
            e.extend(d);
        }
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
        let mut msg = vec![1, 0];
        msg.extend((body.len() as u16).to_be_bytes());
        msg.extend(body);
        let mut out = Vec::new();
        for c in msg.chunks(rec) {
            out.extend([22, 3, 1]);
            out.extend((c.len() as u16).to_be_bytes());
            out.extend(c);
        }
        out
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend(entry);
        (0, d)
    }

    #[test]
    fn reads_sni_across_records_and_partial_input() {
        for rec in [7, 50, 16384] {
            let h = hello(&[(10, vec![0, 2, 0, 29]), sni("API.Example.com.")], rec);
            for cut in 0..h.len() {
                assert_eq!(parse_client_hello(&h[..cut], 16384).unwrap(), None, "{cut}");
            }
            let got = parse_client_hello(&h, 16384).unwrap().unwrap();
            assert_eq!(got.sni.as_deref(), Some("api.example.com"));
            assert!(!got.ech);
        }
    }

    #[test]
    fn sni_that_is_not_a_dns_name_is_refused() {
        // Found by the `egress_client_hello` fuzz target: a lone "." became an empty SNI.
        for bad in [".", "..", "a..b", ".a", &"a".repeat(64)] {
            assert_eq!(
                parse_client_hello(&hello(&[sni(bad)], 16384), 16384),
                Err(HelloError::Malformed),
                "{bad:?}"
            );
        }
        let ok = parse_client_hello(&hello(&[sni("x.example.")], 16384), 16384)
            .unwrap()
            .unwrap();
        assert_eq!(ok.sni.as_deref(), Some("x.example"));
    }

    #[test]
    fn missing_sni_ech_and_garbage() {
        let h = parse_client_hello(&hello(&[], 16384), 16384)
            .unwrap()
            .unwrap();
        assert_eq!(h.sni, None);
        let h = parse_client_hello(&hello(&[sni("a.b"), (EXT_ECH, vec![0])], 16384), 16384)
            .unwrap()
            .unwrap();
        assert!(h.ech);
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n", 16384),
            Err(HelloError::NotTls)
        );
        assert_eq!(
            parse_client_hello(&hello(&[sni("a.b"), sni("c.d")], 16384), 16384),
            Err(HelloError::Malformed)
        );
        assert_eq!(
            parse_client_hello(&hello(&[sni("a b")], 16384), 16384),
            Err(HelloError::Malformed)
        );
        let big = hello(&[(99, vec![0; 3000])], 16384);
        assert_eq!(parse_client_hello(&big, 1000), Err(HelloError::TooLarge));
    }
}
