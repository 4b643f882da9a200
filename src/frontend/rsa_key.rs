//! The RSA key pair for caching_sha2_password full authentication over plain TCP: the client
//! asks for the public key and sends its password encrypted with it (RSA-OAEP with SHA-1, as
//! MySQL does). Generated on first use unless a PEM file is configured.

use std::sync::OnceLock;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};

pub struct RsaKey {
    path: Option<String>,
    key: OnceLock<Result<(RsaPrivateKey, String), String>>,
}

impl RsaKey {
    pub fn new(path: Option<String>) -> RsaKey {
        RsaKey {
            path,
            key: OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&(RsaPrivateKey, String), String> {
        self.key
            .get_or_init(|| {
                let private = match &self.path {
                    Some(p) => {
                        let pem = std::fs::read_to_string(p)
                            .map_err(|e| format!("cannot read {p}: {e}"))?;
                        RsaPrivateKey::from_pkcs8_pem(&pem)
                            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
                            .map_err(|e| format!("{p}: not an RSA private key: {e}"))?
                    }
                    None => RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                        .map_err(|e| e.to_string())?,
                };
                let public = RsaPublicKey::from(&private)
                    .to_public_key_pem(LineEnding::LF)
                    .map_err(|e| e.to_string())?;
                Ok((private, public))
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// The public key in PEM (SubjectPublicKeyInfo), as clients expect it.
    pub fn public_pem(&self) -> Result<String, String> {
        self.get().map(|(_, p)| p.clone())
    }

    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        let (k, _) = self.get()?;
        k.decrypt(Oaep::new::<sha1::Sha1>(), data)
            .map_err(|e| e.to_string())
    }
}
