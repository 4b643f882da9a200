//! TLS on the data port, with rustls (no crypto of our own).
//!
//! A MySQL client asks for TLS in the middle of the handshake: the server's greeting offers
//! `CLIENT_SSL`, the client answers with a short *SSL request* (its capabilities only), both
//! sides run the TLS handshake on the same socket, and the client then sends its real
//! handshake response encrypted. So a session starts on clear text and may switch once.
//!
//! The session reads and writes through [`StreamRead`] and [`StreamWrite`]
//! (`protocol::stream`): enums over clear text and TLS, so the clear-text hot path costs one
//! well-predicted branch per system call and no virtual call. [`upgrade`] turns the clear-text
//! halves into TLS ones; [`acceptor`] loads the certificate chain and key from PEM files
//! once, at start.

use std::io;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;
use crate::protocol::stream::{StreamRead, StreamWrite};

/// Builds the data port's TLS acceptor from the configured PEM files.
pub fn acceptor(tls: &Tls) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| anyhow::anyhow!("tls.cert {}: {e}", tls.cert))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("tls.cert {}: {e}", tls.cert))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert {}: no certificate in the file", tls.cert);
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| anyhow::anyhow!("tls.key {}: {e}", tls.key))?;
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls.cert/tls.key: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the TLS handshake on a clear-text connection and returns the encrypted halves.
/// Nothing may be buffered on either side (the caller checks): the client sends no byte after
/// its SSL request before the TLS handshake.
pub async fn upgrade(
    acceptor: &TlsAcceptor,
    r: StreamRead,
    w: StreamWrite,
) -> io::Result<(StreamRead, StreamWrite)> {
    let tcp = crate::protocol::stream::reunite(r, w)?;
    let tls = acceptor.accept(tcp).await?;
    Ok(crate::protocol::stream::split_tls(tls.into()))
}
