//! JWT-SVIDs: ES256 (ECDSA P-256, SHA-256) tokens with `sub`, `aud`, `exp`, `iat` and a unique
//! `jti`; the JWKS bundle that publishes the signing keys; and strict validation (fuzzed).
//!
//! Validation refuses anything but ES256 with a known `kid` (no `none`, no HMAC confusion),
//! requires `exp` in the future and the expected audience, and checks the subject is a SPIFFE ID
//! in the bundle's trust domain.

use crate::spiffe_id::SpiffeId;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use ring::{
    rand::{SecureRandom, SystemRandom},
    signature::{self, EcdsaKeyPair, KeyPair},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest token accepted for parsing, so hostile input cannot make us allocate much.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Errors issuing or validating a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or too long.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not ES256.
    #[error("unsupported alg `{0}` (only ES256)")]
    Alg(String),
    /// No key with this `kid` in the bundle.
    #[error("unknown kid `{0}`")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Expired (or `exp` missing).
    #[error("token expired")]
    Expired,
    /// The audience is not in `aud`.
    #[error("audience `{0}` not in token")]
    Audience(String),
    /// `sub` is not a SPIFFE ID of the trust domain.
    #[error("bad subject: {0}")]
    Subject(String),
    /// The system random generator or key handling failed.
    #[error("crypto: {0}")]
    Crypto(String),
}

/// The JOSE header of a JWT-SVID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// Always ES256 here.
    pub alg: String,
    /// Key id in the JWT bundle.
    pub kid: String,
    /// `JWT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    /// True if `aud` contains `a`.
    pub fn contains(&self, a: &str) -> bool {
        match self {
            Audience::One(s) => s == a,
            Audience::Many(v) => v.iter().any(|s| s == a),
        }
    }
}

/// The claims of a JWT-SVID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The SPIFFE ID.
    pub sub: String,
    /// Audiences.
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Unique token id (replay protection).
    #[serde(default)]
    pub jti: String,
    /// Anything else, kept for `ValidateJWTSVID`'s claims.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A JWT signing key (P-256) with its key id.
pub struct JwtSigner {
    kid: String,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn random_b64(n: usize) -> Result<String, JwtError> {
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| JwtError::Crypto("no system randomness".into()))?;
    Ok(B64.encode(b))
}

impl JwtSigner {
    /// Generates a new signing key with a random key id.
    pub fn generate() -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| JwtError::Crypto(e.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .map_err(|e| JwtError::Crypto(e.to_string()))?;
        Ok(Self {
            kid: random_b64(18)?,
            key,
            rng,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a bundle entry.
    pub fn public(&self) -> JwtPublicKey {
        JwtPublicKey {
            kid: self.kid.clone(),
            point: self.key.public_key().as_ref().to_vec(),
        }
    }

    /// Signs a JWT-SVID for `sub` with `aud`, valid `ttl_secs` from `now`; returns the token
    /// and its claims.
    pub fn sign(
        &self,
        sub: &SpiffeId,
        aud: &[String],
        now: u64,
        ttl_secs: u64,
    ) -> Result<(String, Claims), JwtError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.kid.clone(),
            typ: Some("JWT".into()),
        };
        let claims = Claims {
            sub: sub.to_string(),
            aud: if aud.len() == 1 {
                Audience::One(aud[0].clone())
            } else {
                Audience::Many(aud.to_vec())
            },
            exp: now + ttl_secs,
            iat: now,
            jti: random_b64(16)?,
            extra: BTreeMap::new(),
        };
        let signing_input = format!("{}.{}", b64_json(&header)?, b64_json(&claims)?);
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| JwtError::Crypto(e.to_string()))?;
        Ok((
            format!("{signing_input}.{}", B64.encode(sig.as_ref())),
            claims,
        ))
    }
}

fn b64_json<T: Serialize>(v: &T) -> Result<String, JwtError> {
    serde_json::to_vec(v)
        .map(|b| B64.encode(b))
        .map_err(|e| JwtError::Crypto(e.to_string()))
}

/// A public JWT key: `kid` and the uncompressed P-256 point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtPublicKey {
    /// Key id.
    pub kid: String,
    /// `04 || x || y`.
    pub point: Vec<u8>,
}

/// The JWT bundle of one trust domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtBundle {
    /// Keys by id.
    pub keys: Vec<JwtPublicKey>,
}

#[derive(Serialize, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    y: String,
    #[serde(rename = "use", default, skip_serializing_if = "String::is_empty")]
    use_: String,
}

#[derive(Serialize, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<u64>,
}

impl JwtBundle {
    /// The bundle as JWKS JSON (`use: jwt-svid`, as the SPIFFE bundle format says).
    pub fn to_jwks(&self, refresh_hint_secs: u64) -> Vec<u8> {
        let keys = self
            .keys
            .iter()
            .filter(|k| k.point.len() == 65)
            .map(|k| Jwk {
                kty: "EC".into(),
                kid: k.kid.clone(),
                crv: "P-256".into(),
                x: B64.encode(&k.point[1..33]),
                y: B64.encode(&k.point[33..65]),
                use_: "jwt-svid".into(),
            })
            .collect();
        serde_json::to_vec(&Jwks {
            keys,
            spiffe_refresh_hint: Some(refresh_hint_secs),
        })
        .unwrap_or_default()
    }

    /// Parses JWKS JSON, keeping the P-256 EC keys (others are skipped: we verify only ES256).
    pub fn from_jwks(json: &[u8]) -> Result<Self, JwtError> {
        let jwks: Jwks =
            serde_json::from_slice(json).map_err(|e| JwtError::Malformed(e.to_string()))?;
        let mut keys = Vec::new();
        for k in jwks.keys {
            if k.kty != "EC" || k.crv != "P-256" || k.kid.is_empty() {
                continue;
            }
            let (Ok(x), Ok(y)) = (B64.decode(&k.x), B64.decode(&k.y)) else {
                continue;
            };
            if x.len() != 32 || y.len() != 32 {
                continue;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            keys.push(JwtPublicKey { kid: k.kid, point });
        }
        Ok(JwtBundle { keys })
    }
}

/// Splits and decodes a token without verifying it (for routing by `kid`, and for fuzzing).
pub fn decode_unverified(token: &str) -> Result<(Header, Claims, String, Vec<u8>), JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("token too long".into()));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three parts".into()));
    };
    let dec = |p: &str| {
        B64.decode(p)
            .map_err(|e| JwtError::Malformed(e.to_string()))
    };
    let header: Header = serde_json::from_slice(&dec(h)?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    let claims: Claims = serde_json::from_slice(&dec(c)?)
        .map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    Ok((header, claims, format!("{h}.{c}"), dec(s)?))
}

/// Validates a JWT-SVID against `bundle` of `trust_domain` for `audience` at time `now`.
pub fn validate(
    token: &str,
    trust_domain: &str,
    bundle: &JwtBundle,
    audience: &str,
    now: u64,
) -> Result<(SpiffeId, Claims), JwtError> {
    let (header, claims, signing_input, sig) = decode_unverified(token)?;
    if header.alg != "ES256" {
        return Err(JwtError::Alg(header.alg));
    }
    let key = bundle
        .keys
        .iter()
        .find(|k| k.kid == header.kid)
        .ok_or_else(|| JwtError::UnknownKey(header.kid.clone()))?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &key.point)
        .verify(signing_input.as_bytes(), &sig)
        .map_err(|_| JwtError::Signature)?;
    if claims.exp <= now {
        return Err(JwtError::Expired);
    }
    if !claims.aud.contains(audience) {
        return Err(JwtError::Audience(audience.to_owned()));
    }
    let id = SpiffeId::parse(&claims.sub).map_err(|e| JwtError::Subject(e.to_string()))?;
    if id.trust_domain() != trust_domain {
        return Err(JwtError::Subject(format!("{id} is not in {trust_domain}")));
    }
    Ok((id, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (JwtSigner, JwtBundle, SpiffeId) {
        let s = JwtSigner::generate().unwrap();
        let b = JwtBundle {
            keys: vec![s.public()],
        };
        (s, b, SpiffeId::parse("spiffe://t.test/a").unwrap())
    }

    #[test]
    fn sign_validate_roundtrip_through_jwks() {
        let (s, b, id) = setup();
        let (tok, claims) = s.sign(&id, &["svc".into()], 1000, 300).unwrap();
        let b2 = JwtBundle::from_jwks(&b.to_jwks(60)).unwrap();
        assert_eq!(b, b2);
        let (got, c) = validate(&tok, "t.test", &b2, "svc", 1100).unwrap();
        assert_eq!(got, id);
        assert_eq!(c.jti, claims.jti);
        assert_eq!(c.exp, 1300);
        assert!(!c.jti.is_empty());
    }

    #[test]
    fn refuses_expired_wrong_audience_and_tampering() {
        let (s, b, id) = setup();
        let (tok, _) = s.sign(&id, &["svc".into()], 1000, 300).unwrap();
        assert_eq!(
            validate(&tok, "t.test", &b, "svc", 1300),
            Err(JwtError::Expired)
        );
        assert!(matches!(
            validate(&tok, "t.test", &b, "other", 1100),
            Err(JwtError::Audience(_))
        ));
        assert!(matches!(
            validate(&tok, "u.test", &b, "svc", 1100),
            Err(JwtError::Subject(_))
        ));
        // Swap the claims for another subject's: the signature no longer matches.
        let (other, _) = s
            .sign(
                &SpiffeId::parse("spiffe://t.test/b").unwrap(),
                &["svc".into()],
                1000,
                300,
            )
            .unwrap();
        let p: Vec<&str> = tok.split('.').collect();
        let q: Vec<&str> = other.split('.').collect();
        let forged = format!("{}.{}.{}", p[0], q[1], p[2]);
        assert_eq!(
            validate(&forged, "t.test", &b, "svc", 1100),
            Err(JwtError::Signature)
        );
        // alg=none is refused before any key lookup.
        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","kid":"x"}"#), p[1]);
        assert!(matches!(
            validate(&none, "t.test", &b, "svc", 1100),
            Err(JwtError::Alg(_))
        ));
        // A key from another signer is unknown.
        let (s2, _, _) = setup();
        let (tok2, _) = s2.sign(&id, &["svc".into()], 1000, 300).unwrap();
        assert!(matches!(
            validate(&tok2, "t.test", &b, "svc", 1100),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn jti_is_unique() {
        let (s, _, id) = setup();
        let a = s.sign(&id, &["x".into()], 1, 1).unwrap().1.jti;
        let b = s.sign(&id, &["x".into()], 1, 1).unwrap().1.jti;
        assert_ne!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(s in ".{0,300}") {
            let _ = decode_unverified(&s);
        }
    }
}
