//! The certificate authority: a root (key in a file, in a PKCS#11 token, or generated in memory
//! for a lab) signs an intermediate whose key lives only in the agent's memory; the
//! intermediate issues X.509-SVIDs (ECDSA P-256) with short TTLs.
//!
//! Why an intermediate: the root key is touched once per intermediate (at start), so it can stay
//! in an HSM or off the node; a compromised node leaks only a short-lived intermediate.

use crate::spiffe_id::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use std::time::Duration;
use time::OffsetDateTime;

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen could not build or sign a certificate.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A PEM or DER input is not what it should be.
    #[error("{0}")]
    Input(String),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Clock skew allowance: certificates are valid from a little before issuance.
const BACKDATE: Duration = Duration::from_secs(30);

fn random_serial() -> Result<SerialNumber, CaError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CaError::Input("no system randomness".into()))?;
    // Positive and 16 bytes long, as RFC 5280 asks (at most 20 octets, non-negative).
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn ca_params(
    trust_domain: &str,
    common_name: &str,
    validity: Duration,
    path_len: u8,
) -> Result<CertificateParams, CaError> {
    let td_id =
        SpiffeId::of_trust_domain(trust_domain).map_err(|e| CaError::Input(e.to_string()))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "brainbox-guard");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // The X.509-SVID standard: signing certificates carry the trust domain's SPIFFE ID.
    p.subject_alt_names = vec![SanType::URI(
        td_id
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Cert(e))?,
    )];
    p.not_before = now() - BACKDATE;
    p.not_after = now() + validity;
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// Creates a self-signed root CA certificate for `trust_domain` with `key` (DER).
pub fn self_signed_root(
    trust_domain: &str,
    key: &impl SigningKey,
    validity: Duration,
) -> Result<Vec<u8>, CaError> {
    let mut p = ca_params(
        trust_domain,
        &format!("{trust_domain} root CA"),
        validity,
        1,
    )?;
    p.use_authority_key_identifier_extension = false;
    Ok(p.self_signed(key)?.der().to_vec())
}

/// The issuing CA: intermediate certificate and key, plus the root certificate that anchors it.
pub struct Ca {
    trust_domain: String,
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate_not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("intermediate_not_after", &self.intermediate_not_after)
            .finish_non_exhaustive()
    }
}

/// An issued X.509-SVID.
#[derive(Clone)]
pub struct IssuedX509 {
    /// The SPIFFE ID in the URI SAN.
    pub spiffe_id: SpiffeId,
    /// Leaf first, then the intermediate (DER each).
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key, PKCS#8 DER.
    pub key_pkcs8: Vec<u8>,
    /// Serial number, lowercase hex without separators (as the deny-list writes it).
    pub serial_hex: String,
    /// Seconds since the epoch when the leaf stops being valid.
    pub not_after: u64,
}

impl std::fmt::Debug for IssuedX509 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedX509")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates an intermediate for `trust_domain` signed by the root (`root_der` and its key,
    /// which may live in an HSM). The intermediate key is generated here and never leaves memory.
    pub fn new_intermediate(
        trust_domain: &str,
        root_der: &[u8],
        root_key: &impl SigningKey,
        validity: Duration,
    ) -> Result<Ca, CaError> {
        let root_issuer = Issuer::from_ca_cert_der(&root_der.to_vec().into(), root_key)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(
            trust_domain,
            &format!("{trust_domain} intermediate CA"),
            validity,
            0,
        )?;
        let cert = params.signed_by(&key, &root_issuer)?;
        let intermediate_not_after = params.not_after;
        Ok(Ca {
            trust_domain: trust_domain.to_owned(),
            root_der: root_der.to_vec(),
            intermediate_der: cert.der().to_vec(),
            intermediate_not_after,
            issuer: Issuer::new(params, key),
        })
    }

    /// A lab CA: a root generated in memory signs the intermediate, then the root key is
    /// dropped, so nothing can sign another intermediate later.
    pub fn ephemeral(trust_domain: &str, validity: Duration) -> Result<Ca, CaError> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let root = self_signed_root(trust_domain, &root_key, validity * 2)?;
        Self::new_intermediate(trust_domain, &root, &root_key, validity)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate (DER): the X.509 bundle.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate (DER).
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// Seconds since the epoch when the intermediate expires; SVIDs never outlive it.
    pub fn intermediate_not_after(&self) -> u64 {
        u64::try_from(self.intermediate_not_after.unix_timestamp()).unwrap_or(0)
    }

    /// Issues an X.509-SVID for `id` valid for `ttl` (capped at the intermediate's expiry).
    pub fn issue_x509(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedX509, CaError> {
        if id.trust_domain() != self.trust_domain {
            return Err(CaError::Input(format!(
                "{id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        // The X.509-SVID standard: the identity is the URI SAN; the subject is informational.
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "brainbox-guard");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let serial = random_serial()?;
        let serial_hex = hex(serial.as_ref());
        p.serial_number = Some(serial);
        p.not_before = now() - BACKDATE;
        let not_after = (now() + ttl).min(self.intermediate_not_after);
        p.not_after = not_after;
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(IssuedX509 {
            spiffe_id: id.clone(),
            chain: vec![cert.der().to_vec(), self.intermediate_der.clone()],
            key_pkcs8: key.serialize_der(),
            serial_hex,
            not_after: u64::try_from(not_after.unix_timestamp()).unwrap_or(0),
        })
    }
}

/// Lowercase hex of bytes, no separators.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// PEM-encodes DER blocks with the given label.
pub fn pem_encode(label: &str, ders: &[&[u8]]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in ders {
        out.push_str(&format!("-----BEGIN {label}-----\n"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
    }
    out
}

/// Loads a root CA: certificate PEM and PKCS#8 key PEM from files.
pub fn load_root_files(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<(Vec<u8>, KeyPair), CaError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|source| CaError::Io {
            path: p.to_owned(),
            source,
        })
    };
    let cert_der = pem_decode_first(&read(cert_path)?, "CERTIFICATE")
        .ok_or_else(|| CaError::Input(format!("{}: no CERTIFICATE block", cert_path.display())))?;
    let key = KeyPair::from_pem(&read(key_path)?)?;
    Ok((cert_der, key))
}

/// Decodes the first PEM block with `label`.
pub fn pem_decode_first(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn issues_a_verifiable_svid_chain() {
        let ca = Ca::ephemeral("brainbox.test", Duration::from_secs(3600)).unwrap();
        let id = SpiffeId::parse("spiffe://brainbox.test/ns/default/brainbox/p").unwrap();
        let svid = ca.issue_x509(&id, Duration::from_secs(300)).unwrap();
        assert_eq!(svid.chain.len(), 2);
        let (_, leaf) = X509Certificate::from_der(&svid.chain[0]).unwrap();
        let (_, inter) = X509Certificate::from_der(&svid.chain[1]).unwrap();
        let (_, root) = X509Certificate::from_der(ca.root_der()).unwrap();
        leaf.verify_signature(Some(inter.public_key())).unwrap();
        inter.verify_signature(Some(root.public_key())).unwrap();
        root.verify_signature(None).unwrap();
        assert!(!leaf.is_ca());
        assert!(inter.is_ca());
        let parsed = crate::x509::parse_svid(&svid.chain[0]).unwrap();
        assert_eq!(parsed.spiffe_id, id);
        assert_eq!(parsed.serial_hex, svid.serial_hex);
        let ttl =
            leaf.validity().not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
        assert!((290..=300).contains(&ttl), "ttl {ttl}");
    }

    #[test]
    fn refuses_foreign_trust_domain_and_caps_ttl() {
        let ca = Ca::ephemeral("a.test", Duration::from_secs(60)).unwrap();
        let other = SpiffeId::parse("spiffe://b.test/x").unwrap();
        assert!(ca.issue_x509(&other, Duration::from_secs(5)).is_err());
        let id = SpiffeId::parse("spiffe://a.test/x").unwrap();
        let s = ca.issue_x509(&id, Duration::from_secs(86400)).unwrap();
        assert!(s.not_after <= ca.intermediate_not_after());
    }

    #[test]
    fn root_from_files_signs_intermediate() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root = self_signed_root("f.test", &key, Duration::from_secs(3600)).unwrap();
        std::fs::write(
            dir.path().join("root.pem"),
            pem_encode("CERTIFICATE", &[&root]),
        )
        .unwrap();
        std::fs::write(dir.path().join("root.key"), key.serialize_pem()).unwrap();
        let (cert, k) =
            load_root_files(&dir.path().join("root.pem"), &dir.path().join("root.key")).unwrap();
        let ca = Ca::new_intermediate("f.test", &cert, &k, Duration::from_secs(600)).unwrap();
        let (_, inter) = X509Certificate::from_der(ca.intermediate_der()).unwrap();
        let (_, r) = X509Certificate::from_der(&root).unwrap();
        inter.verify_signature(Some(r.public_key())).unwrap();
        assert_eq!(inter.issuer(), r.subject());
    }
}
