//! rustls configurations fed by the rotating SVID: a certificate resolver that always returns
//! the current SVID (so a rotation needs no new `ServerConfig`) and a verifier that checks the
//! peer's chain against the current bundle, its SPIFFE ID against an authorisation rule, and
//! its ID and serial against the deny-list. Hostnames play no part: SPIFFE peers are named by
//! their SPIFFE ID.

use brainbox_identity::{denylist::SharedDenyList, spiffe_id::SpiffeId, x509::parse_svid};
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        ResolvesClientCert,
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ResolvesServerCert,
    },
    sign::CertifiedKey,
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use std::sync::{Arc, RwLock};

/// The current SVID as rustls wants it, plus the bundle; swapped as a whole.
#[derive(Debug, Default)]
pub struct SvidStore {
    key: RwLock<Option<Arc<CertifiedKey>>>,
    bundle: RwLock<Arc<Vec<CertificateDer<'static>>>>,
}

impl SvidStore {
    /// Installs a new SVID (chain DER, leaf first; PKCS#8 key DER) and bundle.
    pub fn install(
        &self,
        provider: &CryptoProvider,
        chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
        bundle: Vec<Vec<u8>>,
    ) -> Result<(), rustls::Error> {
        let key = provider
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(key_pkcs8.into()))?;
        let certs = chain.into_iter().map(CertificateDer::from).collect();
        let ck = CertifiedKey::new(certs, key);
        // Refuse a key that does not belong to the certificate instead of serving it.
        ck.keys_match()?;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(ck));
        *self.bundle.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(bundle.into_iter().map(CertificateDer::from).collect());
        Ok(())
    }

    /// The current certified key.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bundle(&self) -> Arc<Vec<CertificateDer<'static>>> {
        self.bundle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Which peers are accepted.
#[derive(Debug, Clone)]
pub enum Authorize {
    /// Any SPIFFE ID of this trust domain.
    TrustDomain(String),
    /// Exactly these IDs.
    Ids(Vec<SpiffeId>),
}

impl Authorize {
    fn allows(&self, id: &SpiffeId) -> bool {
        match self {
            Authorize::TrustDomain(td) => id.trust_domain() == td,
            Authorize::Ids(ids) => ids.contains(id),
        }
    }
}

/// Resolver and verifier over one [`SvidStore`].
#[derive(Debug)]
pub struct SpiffeTls {
    store: Arc<SvidStore>,
    provider: Arc<CryptoProvider>,
    authorize: Authorize,
    deny: Option<SharedDenyList>,
}

impl SpiffeTls {
    /// Builds the resolver/verifier.
    pub fn new(
        store: Arc<SvidStore>,
        provider: Arc<CryptoProvider>,
        authorize: Authorize,
        deny: Option<SharedDenyList>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            provider,
            authorize,
            deny,
        })
    }

    /// A server configuration requiring client SVIDs. Session resumption is off: a resumed
    /// session skips certificate verification, so a revoked or rotated-out peer SVID would keep
    /// working; a full handshake per connection is the price of the deny-list taking effect.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut c = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(self.clone())
            .with_cert_resolver(self.clone());
        c.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        c.send_tls13_tickets = 0;
        Ok(c)
    }

    /// A client configuration presenting our SVID (no session resumption, as for the server).
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut c = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_client_cert_resolver(self.clone());
        c.resumption = rustls::client::Resumption::disabled();
        Ok(c)
    }

    fn verify_peer(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<SpiffeId, rustls::Error> {
        let bundle = self.store.bundle();
        let anchors: Vec<_> = bundle
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect();
        if anchors.is_empty() {
            return Err(rustls::Error::General("no trust bundle yet".into()));
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| rustls::Error::InvalidCertificate(pki_error(e)))?;
        let svid = parse_svid(end_entity.as_ref())
            .map_err(|e| rustls::Error::General(format!("peer SVID: {e}")))?;
        if let Some(deny) = &self.deny {
            let list = deny.current();
            if list.denies_id(svid.spiffe_id.as_str()) || list.denies_serial(&svid.serial_hex) {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ));
            }
        }
        if !self.authorize.allows(&svid.spiffe_id) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(svid.spiffe_id)
    }
}

fn pki_error(e: webpki::Error) -> rustls::CertificateError {
    use rustls::CertificateError as C;
    match e {
        webpki::Error::CertExpired { .. } => C::Expired,
        webpki::Error::CertNotValidYet { .. } => C::NotValidYet,
        webpki::Error::UnknownIssuer => C::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => C::BadSignature,
        _ => C::Other(rustls::OtherError(Arc::new(e))),
    }
}

impl ResolvesServerCert for SpiffeTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.current()
    }
}

impl ResolvesClientCert for SpiffeTls {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.store.current()
    }

    fn has_certs(&self) -> bool {
        self.store.current().is_some()
    }
}

impl SpiffeTls {
    /// The handshake signature check, the same for both verifier roles.
    fn signature(
        &self,
        tls13: bool,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
        }
    }
}

impl ServerCertVerifier for SpiffeTls {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_peer(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for SpiffeTls {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_peer(
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
        )?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(false, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(true, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
