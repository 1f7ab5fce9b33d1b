//! TLS 1.3 identity for peering: a self-signed certificate carrying the node's Ed25519 key,
//! and verifiers (both directions) that accept a peer only if the certificate's key is on
//! the allowlist and the handshake signature verifies with that key.
//!
//! No certificate authority is involved: the certificate is just a container for the key.
//! Its own signature and validity dates are not checked; what proves the peer holds the
//! key is the TLS 1.3 CertificateVerify signature, which rustls checks with the key inside
//! the certificate ([`rustls::crypto::verify_tls13_signature`]). The allowlist check reads
//! the same SubjectPublicKeyInfo field (see [`cert_public_key`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use dag_core::Keypair;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use node_proto::peering::PeerKey;

/// ALPN id; it carries the wire version, so a peer of another version fails the handshake.
pub const ALPN: &[u8] = b"tangle/1";

/// The allowlist: peer key -> address to dial. Shared by the verifiers and the driver, so
/// changes apply to the next handshake.
pub type Allowlist = Arc<RwLock<HashMap<PeerKey, SocketAddr>>>;

/// Building the TLS configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be generated.
    #[error("certificate: {0}")]
    Certificate(String),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("quic crypto: {0}")]
    Quic(String),
}

/// PKCS#8 v2 (RFC 8410 OneAsymmetricKey with the public key) of an Ed25519 key.
pub fn ed25519_pkcs8(key: &Keypair) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&key.seed());
    der.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
    der.extend_from_slice(&key.address().0);
    der
}

/// A self-signed certificate for `key`, with its PKCS#8 private key.
pub fn self_signed(
    key: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = ed25519_pkcs8(key);
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.clone()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["tangle-node".to_string()])
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)),
    ))
}

/// One DER TLV: (tag, contents, rest). `None` on malformed input (never panics).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for b in &rest[..n] {
            len = (len << 8) | usize::from(*b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The Ed25519 public key in an X.509 certificate's SubjectPublicKeyInfo, or `None` if the
/// certificate is malformed or carries another kind of key.
pub fn cert_public_key(cert: &[u8]) -> Option<PeerKey> {
    const SEQ: u8 = 0x30;
    let (tag, certificate, _) = tlv(cert)?;
    if tag != SEQ {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQ {
        return None;
    }
    let mut rest = tbs;
    // Optional explicit version [0].
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    // serial, signature algorithm, issuer, validity, subject.
    for expected in [0x02, SEQ, SEQ, SEQ, SEQ] {
        let (tag, _, r) = tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = r;
    }
    let (tag, spki, _) = tlv(rest)?;
    if tag != SEQ {
        return None;
    }
    let (tag, alg, r) = tlv(spki)?;
    // AlgorithmIdentifier { id-Ed25519 } with no parameters.
    if tag != SEQ || alg != [0x06, 0x03, 0x2b, 0x65, 0x70] {
        return None;
    }
    let (tag, bits, r) = tlv(r)?;
    if tag != 0x03 || !r.is_empty() || bits.len() != 33 || bits[0] != 0 {
        return None;
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&bits[1..]);
    Some(PeerKey(k))
}

/// Checks a presented certificate against the allowlist.
fn check_allowed(allow: &Allowlist, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let key = cert_public_key(end_entity).ok_or(rustls::Error::InvalidCertificate(
        rustls::CertificateError::BadEncoding,
    ))?;
    let allowed = allow
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(&key);
    if allowed {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// Verifies peers (in either role) against the allowlist.
#[derive(Debug)]
pub struct AllowlistVerifier {
    allow: Allowlist,
    algs: WebPkiSupportedAlgorithms,
}

impl AllowlistVerifier {
    /// A verifier for `allow`, verifying signatures with `provider`'s algorithms.
    pub fn new(allow: Allowlist, provider: &CryptoProvider) -> Self {
        AllowlistVerifier {
            allow,
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AllowlistVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_allowed(&self.allow, end_entity).map(|_| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for AllowlistVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_allowed(&self.allow, end_entity).map(|_| ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// quinn server and client configurations for `key`, accepting only `allow`ed peers.
pub fn quic_configs(
    key: &Keypair,
    allow: Allowlist,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AllowlistVerifier::new(allow, &provider));
    let (cert, pkey) = self_signed(key)?;

    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(vec![cert.clone()], pkey.clone_key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![cert], pkey)?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(std::time::Duration::from_secs(2)))
        // One long-lived bidirectional stream per connection; nothing else may be opened,
        // so a peer cannot make us buffer streams we never read.
        .max_concurrent_bidi_streams(1u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .max_idle_timeout(Some(
            std::time::Duration::from_secs(10)
                .try_into()
                .expect("10 s is a valid idle timeout"),
        ));
    let transport = Arc::new(transport);

    let qs = quinn::crypto::rustls::QuicServerConfig::try_from(server)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(qs));
    server.transport_config(transport.clone());
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(client)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(qc));
    client.transport_config(transport);
    Ok((server, client))
}

/// The key a connected peer proved it holds.
pub fn peer_key(conn: &quinn::Connection) -> Option<PeerKey> {
    let id = conn.peer_identity()?;
    let certs = id.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    cert_public_key(certs.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_identity_key() {
        let kp = Keypair::from_seed(&[7; 32]);
        let (cert, _) = self_signed(&kp).unwrap();
        assert_eq!(cert_public_key(&cert), Some(PeerKey(kp.address().0)));
        let other = Keypair::from_seed(&[8; 32]);
        assert_ne!(cert_public_key(&cert), Some(PeerKey(other.address().0)));
    }

    #[test]
    fn malformed_certificates_yield_no_key() {
        let kp = Keypair::from_seed(&[7; 32]);
        let (cert, _) = self_signed(&kp).unwrap();
        for cut in 0..cert.len() {
            assert_eq!(cert_public_key(&cert[..cut]), None);
        }
        assert_eq!(cert_public_key(&[0xff; 64]), None);
    }
}
