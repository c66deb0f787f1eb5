//! Parsing X.509-SVIDs as the X.509-SVID standard defines them: exactly one URI SAN holding a
//! SPIFFE ID, not a CA, with the digitalSignature key usage. Used by the proxy and the sidecar
//! to learn a peer's identity and serial number (for the deny-list); fuzzed.

use crate::spiffe_id::SpiffeId;
use x509_parser::prelude::*;

/// Errors parsing an SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    /// Not DER, or trailing bytes.
    #[error("not a DER certificate: {0}")]
    Der(String),
    /// Not exactly one URI SAN.
    #[error("an X.509-SVID has exactly one URI SAN, this has {0}")]
    UriSans(usize),
    /// The URI SAN is not a SPIFFE ID.
    #[error("URI SAN: {0}")]
    Id(String),
    /// A leaf that is a CA or lacks digitalSignature.
    #[error("not a leaf SVID: {0}")]
    NotLeaf(&'static str),
}

/// What the rest of the system needs from an SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSvid {
    /// The SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Serial, lowercase hex, leading zero bytes stripped as DER encodes them.
    pub serial_hex: String,
    /// Seconds since the epoch when the certificate expires.
    pub not_after: i64,
}

/// Parses one leaf X.509-SVID (DER).
pub fn parse_svid(der: &[u8]) -> Result<ParsedSvid, SvidError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| SvidError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SvidError::Der(format!("{} trailing bytes", rest.len())));
    }
    if cert.is_ca() {
        return Err(SvidError::NotLeaf("basicConstraints CA:true"));
    }
    match cert.key_usage() {
        Ok(Some(ku)) if ku.value.digital_signature() && !ku.value.key_cert_sign() => {}
        Ok(_) => return Err(SvidError::NotLeaf("keyUsage lacks digitalSignature")),
        Err(e) => return Err(SvidError::Der(e.to_string())),
    }
    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::URI(u) => Some(*u),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(SvidError::Der(e.to_string())),
    };
    if uris.len() != 1 {
        return Err(SvidError::UriSans(uris.len()));
    }
    let spiffe_id = SpiffeId::parse(uris[0]).map_err(|e| SvidError::Id(e.to_string()))?;
    Ok(ParsedSvid {
        spiffe_id,
        serial_hex: crate::ca::hex(cert.raw_serial())
            .trim_start_matches("00")
            .to_owned(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Splits concatenated DER certificates (the Workload API's chain and bundle encoding).
pub fn split_der_chain(mut der: &[u8]) -> Result<Vec<Vec<u8>>, SvidError> {
    let mut out = Vec::new();
    while !der.is_empty() {
        if out.len() >= 64 {
            return Err(SvidError::Der("more than 64 certificates".into()));
        }
        let (rest, _) =
            X509Certificate::from_der(der).map_err(|e| SvidError::Der(e.to_string()))?;
        let used = der.len() - rest.len();
        out.push(der[..used].to_vec());
        der = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse_svid(b"").is_err());
        assert!(parse_svid(&[0x30, 0x82, 0xff, 0xff]).is_err());
        assert!(split_der_chain(&[0x30, 0x03, 0x02, 0x01]).is_err());
    }

    #[test]
    fn ca_certificate_is_not_a_leaf() {
        let ca = crate::ca::Ca::ephemeral("t.test", std::time::Duration::from_secs(60)).unwrap();
        assert!(matches!(
            parse_svid(ca.intermediate_der()),
            Err(SvidError::NotLeaf(_))
        ));
        let mut both = ca.intermediate_der().to_vec();
        both.extend_from_slice(ca.root_der());
        assert_eq!(split_der_chain(&both).unwrap().len(), 2);
    }
}
