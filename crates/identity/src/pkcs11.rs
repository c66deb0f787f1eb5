//! The root CA key in a PKCS#11 token (an HSM, or SoftHSM2 in tests). The key is generated
//! inside the token as sensitive and non-extractable; signing sends the SHA-256 digest of the
//! certificate's to-be-signed bytes to the token (`CKM_ECDSA`) and DER-encodes the raw `r||s`
//! it returns. The key itself never exists outside the token.

use cryptoki::{
    context::{CInitializeArgs, CInitializeFlags, Pkcs11},
    mechanism::Mechanism,
    object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle},
    session::{Session, UserType},
    types::AuthPin,
};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey, PKCS_ECDSA_P256_SHA256};
use std::{path::Path, sync::Mutex};

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), the `CKA_EC_PARAMS` of our keys.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Errors talking to the token.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The PKCS#11 library returned an error.
    #[error("PKCS#11: {0}")]
    Token(#[from] cryptoki::error::Error),
    /// The token or key was not found, or is not what we need.
    #[error("{0}")]
    Setup(String),
}

/// A P-256 signing key held in a PKCS#11 token.
pub struct Pkcs11Key {
    // Field order matters: the session must close before the library is finalised.
    session: Mutex<Session>,
    key: ObjectHandle,
    point: Vec<u8>,
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key").finish_non_exhaustive()
    }
}

fn open_session(
    module: &Path,
    token_label: &str,
    pin: &str,
) -> Result<(Pkcs11, Session), Pkcs11Error> {
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let mut found = None;
    for slot in ctx.get_slots_with_token()? {
        if ctx.get_token_info(slot)?.label() == token_label {
            found = Some(slot);
            break;
        }
    }
    let slot =
        found.ok_or_else(|| Pkcs11Error::Setup(format!("no token labelled `{token_label}`")))?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(pin.to_owned())))?;
    Ok((ctx, session))
}

fn ec_point(session: &Session, handle: ObjectHandle) -> Result<Vec<u8>, Pkcs11Error> {
    let attrs = session.get_attributes(handle, &[AttributeType::EcPoint])?;
    let raw = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| Pkcs11Error::Setup("public key has no CKA_EC_POINT".into()))?;
    // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens omit it).
    match raw.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Ok(rest.to_vec()),
        [0x04, ..] if raw.len() == 65 => Ok(raw),
        _ => Err(Pkcs11Error::Setup(
            "CKA_EC_POINT is not an uncompressed P-256 point".into(),
        )),
    }
}

impl Pkcs11Key {
    /// Generates a new P-256 key pair labelled `key_label` in the token: private key sensitive,
    /// not extractable, usable only for signing.
    pub fn generate(
        module: &Path,
        token_label: &str,
        pin: &str,
        key_label: &str,
    ) -> Result<Self, Pkcs11Error> {
        let (ctx, session) = open_session(module, token_label, pin)?;
        let label = key_label.as_bytes().to_vec();
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Label(label.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label),
        ];
        let (pubh, privh) =
            session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
        let point = ec_point(&session, pubh)?;
        Ok(Self {
            session: Mutex::new(session),
            key: privh,
            point,
            _ctx: ctx,
        })
    }

    /// Opens an existing key pair labelled `key_label`.
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: &str,
        key_label: &str,
    ) -> Result<Self, Pkcs11Error> {
        let (ctx, session) = open_session(module, token_label, pin)?;
        let find = |class| {
            session.find_objects(&[
                Attribute::Class(class),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(key_label.as_bytes().to_vec()),
            ])
        };
        let privh = *find(ObjectClass::PRIVATE_KEY)?.first().ok_or_else(|| {
            Pkcs11Error::Setup(format!("no EC private key `{key_label}` in the token"))
        })?;
        let pubh = *find(ObjectClass::PUBLIC_KEY)?.first().ok_or_else(|| {
            Pkcs11Error::Setup(format!("no EC public key `{key_label}` in the token"))
        })?;
        let point = ec_point(&session, pubh)?;
        Ok(Self {
            session: Mutex::new(session),
            key: privh,
            point,
            _ctx: ctx,
        })
    }

    /// Reads attributes of the private key (tests use this to show `CKA_VALUE` is not readable).
    pub fn private_key_attributes(
        &self,
        types: &[AttributeType],
    ) -> Result<Vec<Attribute>, Pkcs11Error> {
        let s = self.session.lock().unwrap_or_else(|p| p.into_inner());
        Ok(s.get_attributes(self.key, types)?)
    }
}

impl PublicKeyData for Pkcs11Key {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl SigningKey for Pkcs11Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        let s = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let raw = s
            .sign(&Mechanism::Ecdsa, self.key, digest.as_ref())
            .map_err(|_| rcgen::Error::RemoteKeyError)?;
        ecdsa_raw_to_der(&raw).ok_or(rcgen::Error::RemoteKeyError)
    }
}

/// Converts a raw `r||s` ECDSA signature (PKCS#11, JWS) to the DER `ECDSA-Sig-Value` X.509 uses.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let int = |x: &[u8]| {
        let x = match x.iter().position(|b| *b != 0) {
            Some(i) => &x[i..],
            None => &[0u8][..],
        };
        let mut v = vec![0x02];
        let pad = x[0] & 0x80 != 0;
        v.push((x.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(x);
        v
    };
    let (ri, si) = (int(r), int(s));
    let mut out = vec![0x30];
    let len = ri.len() + si.len();
    if len >= 0x80 {
        out.push(0x81);
    }
    out.push(len as u8);
    out.extend(ri);
    out.extend(si);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_signature_converts_to_der_that_ring_accepts() {
        use ring::signature::{
            EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let rng = ring::rand::SystemRandom::new();
        let pk = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk.as_ref(), &rng).unwrap();
        for i in 0..50u8 {
            let msg = [i; 10];
            let raw = kp.sign(&rng, &msg).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            ring::signature::UnparsedPublicKey::new(
                &ECDSA_P256_SHA256_ASN1,
                kp.public_key().as_ref(),
            )
            .verify(&msg, &der)
            .unwrap();
        }
        assert!(ecdsa_raw_to_der(&[]).is_none());
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }
}
