//! TLS from the proxy to its backends, with rustls: the CA file of `backend.tls_ca` (or a
//! shard's `tls_ca`) is the only trust root, and each server's certificate must name the
//! host of its configured address (an IP address or a DNS name), as `--ssl-verify-server-cert`
//! checks in MariaDB's own clients.
//!
//! A [`BackendTls`] is built once per CA file when the topology is built and shared by the
//! pools that use it; [`BackendTls::connect`] runs the TLS handshake after the login's SSL
//! request (`backend::conn`).

use std::collections::HashMap;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::{Backend, Config, Shard, Transport};
use crate::protocol::stream::{split_tls, StreamRead, StreamWrite};

/// A TLS client configuration trusting one CA file.
pub struct BackendTls {
    /// The rustls connector (its root store holds the CA file's certificates only).
    connector: TlsConnector,
    /// The CA file, for messages.
    pub ca_path: String,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("ca_path", &self.ca_path)
            .finish()
    }
}

impl BackendTls {
    /// Loads the CA certificates of a PEM file.
    pub fn load(ca_path: &str) -> Result<BackendTls, String> {
        let mut roots = RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_path)
            .map_err(|e| format!("TLS CA file {ca_path}: {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("TLS CA file {ca_path}: {e}"))?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("TLS CA file {ca_path}: no usable CA certificate"));
        }
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(BackendTls {
            connector: TlsConnector::from(Arc::new(config)),
            ca_path: ca_path.to_string(),
        })
    }

    /// Runs the TLS handshake with the server at `addr` (`host:port`), verifying that its
    /// certificate is signed by the CA and names `host`.
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> Result<(StreamRead, StreamWrite), String> {
        let host = host_of(addr);
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS: {host:?} is not a host name or IP address: {e}"))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(split_tls(tls.into()))
    }
}

/// The [`BackendTls`] of each CA file, loaded once per topology.
#[derive(Default)]
pub struct CaCache {
    /// By CA file path.
    loaded: HashMap<String, Result<Arc<BackendTls>, String>>,
}

impl CaCache {
    /// TLS for a shard's servers (`None`: clear text; `Err`: the CA file failed to load).
    pub fn for_shard(
        &mut self,
        shard: &Shard,
        backend: &Backend,
    ) -> Option<Result<Arc<BackendTls>, String>> {
        let ca = match shard.transport(backend) {
            Transport::Clear => return None,
            Transport::Tls { ca } => ca,
            Transport::TlsWithoutCa => {
                return Some(Err(format!("shard {}: TLS without a CA file", shard.name)))
            }
        };
        Some(
            self.loaded
                .entry(ca.to_string())
                .or_insert_with(|| BackendTls::load(ca).map(Arc::new))
                .clone(),
        )
    }
}

/// Every CA file the config names loads: checked once at start so a bad file stops the proxy
/// with the reason instead of failing every backend login.
pub fn check_config(c: &Config) -> Result<(), String> {
    let mut cas = CaCache::default();
    for s in &c.shards {
        if let Some(Err(e)) = cas.for_shard(s, &c.backend) {
            return Err(e);
        }
    }
    Ok(())
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_addresses() {
        assert_eq!(host_of("127.0.0.1:3306"), "127.0.0.1");
        assert_eq!(host_of("db1.example:3306"), "db1.example");
        assert_eq!(host_of("[::1]:3306"), "::1");
    }

    #[test]
    fn missing_ca_file_is_an_error() {
        let e = BackendTls::load("/nonexistent/ca.pem").unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
