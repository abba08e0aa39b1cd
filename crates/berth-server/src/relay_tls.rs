//! TLS between the control planes and the nodes' relays (`berth-node`), with no certificates to
//! hand out: both ends derive their trust from the admin secret they already share.
//!
//! The secret derives an Ed25519 key, the key of a certificate authority no file holds. Each
//! `berth-node` makes a fresh key when it starts and signs a certificate for [`SERVER_NAME`]
//! with that authority; control planes trust that authority alone. So terminals, files and
//! engine calls cross the network encrypted, and only a holder of the admin secret can stand in
//! for a node. (Control planes prove themselves to the node with the node key, inside the
//! encrypted stream: `reach::KEY_HEADER`.)

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use sha2::{Digest, Sha256};

/// The name every relay's certificate carries and control planes ask for: a relay is reached by
/// address, and what matters is that the authority signed it, not which node's name it bears.
pub const SERVER_NAME: &str = "berth-node";

/// The PKCS#8 v1 header of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum RelayTlsError {
    #[error("cannot make the relay's certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up TLS for the relay: {0}")]
    Tls(#[from] rustls::Error),
}

/// The authority derived from `admin_secret`: its signing key and its certificate.
fn authority(
    admin_secret: &str,
) -> Result<(Issuer<'static, KeyPair>, CertificateDer<'static>), RelayTlsError> {
    let mut hasher = Sha256::new();
    hasher.update(b"berth relay authority v1\0");
    hasher.update(admin_secret.as_bytes());
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&hasher.finalize());
    let key =
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Berth node relay authority");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let certificate = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), certificate.der().clone()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a control plane dials relays with: it trusts the authority `admin_secret` derives and
/// nothing else (not the system's roots).
pub fn client_config(admin_secret: &str) -> Result<Arc<ClientConfig>, RelayTlsError> {
    let (_, authority) = authority(admin_secret)?;
    let mut roots = RootCertStore::empty();
    roots.add(authority)?;
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// What a relay answers with: a key made now, certified by the authority `admin_secret` derives.
pub fn server_config(admin_secret: &str) -> Result<Arc<ServerConfig>, RelayTlsError> {
    let (issuer, authority) = authority(admin_secret)?;
    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    let certificate = params.signed_by(&key, &issuer)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone(), authority], key)?,
    ))
}

/// The name a control plane checks a relay's certificate for.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        SERVER_NAME
            .try_into()
            .expect("SERVER_NAME is a valid DNS name"),
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    /// A handshake over an in-memory pipe; the client's error when it fails.
    async fn handshake(server_secret: &str, client_secret: &str) -> Result<(), std::io::Error> {
        let (client_end, server_end) = tokio::io::duplex(16 * 1024);
        let acceptor = TlsAcceptor::from(server_config(server_secret).unwrap());
        let server = tokio::spawn(async move {
            let mut stream = acceptor.accept(server_end).await?;
            let mut greeting = [0u8; 5];
            stream.read_exact(&mut greeting).await?;
            stream.write_all(&greeting).await?;
            stream.flush().await
        });
        let connector = TlsConnector::from(client_config(client_secret).unwrap());
        let mut stream = connector.connect(server_name(), client_end).await?;
        stream.write_all(b"hello").await?;
        let mut echoed = [0u8; 5];
        stream.read_exact(&mut echoed).await?;
        assert_eq!(&echoed, b"hello");
        let _ = server.await;
        Ok(())
    }

    #[tokio::test]
    async fn a_relay_of_the_same_secret_is_trusted() {
        handshake("the shared secret", "the shared secret")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_relay_of_another_secret_is_refused() {
        let err = handshake("someone else's secret", "the shared secret")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
