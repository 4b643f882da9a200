//! Test certificates, made at test time with the `openssl` command (Debian's): a CA and a
//! server certificate it signed for `127.0.0.1` and `localhost`. Nothing is committed; the
//! files live in a temporary directory that is deleted with the [`TestCerts`].

use std::path::{Path, PathBuf};
use std::process::Command;

use super::output_ok;

/// A throwaway CA and a server certificate signed by it (PEM files).
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Makes a new CA and server key pair (RSA 2048, valid two days).
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().expect("tempdir for certificates");
        let d = dir.path();
        // `words` are split on white space; `tail` holds arguments that contain spaces.
        let openssl = |words: &str, tail: &[&str]| {
            output_ok(
                Command::new("openssl")
                    .current_dir(d)
                    .args(words.split_whitespace())
                    .args(tail),
            );
        };
        // A self-signed certificate (a CA, or sysbench's client pair) valid two days.
        let self_signed = |key: &str, cert: &str, subject: &str| {
            let words = format!("req -x509 -newkey rsa:2048 -nodes -keyout {key} -out {cert}");
            openssl(&words, &["-days", "2", "-subj", subject]);
        };
        self_signed("ca.key", "ca.pem", "/CN=shardproxy test CA");
        openssl(
            "req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            &[],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write ext.cnf");
        openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
             -days 2 -extfile ext.cnf",
            &[],
        );
        // A second CA that signed nothing here: verifying against it must fail.
        self_signed("other.key", "other-ca.pem", "/CN=some other CA");
        // The file names sysbench's `--mysql-ssl=on` loads from its working directory
        // (1.0.20 has no options for them): the CA, and a client pair the proxy ignores.
        let sb = d.join("sysbench");
        std::fs::create_dir(&sb).expect("mkdir sysbench");
        std::fs::copy(d.join("ca.pem"), sb.join("cacert.pem")).expect("copy CA");
        self_signed(
            "sysbench/client-key.pem",
            "sysbench/client-cert.pem",
            "/CN=sysbench client",
        );
        TestCerts { dir }
    }

    /// A directory with `cacert.pem`, `client-cert.pem` and `client-key.pem`: run sysbench
    /// `--mysql-ssl=on` there.
    pub fn sysbench_dir(&self) -> PathBuf {
        self.path("sysbench")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate clients verify against.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that did not sign the server certificate.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// The server certificate (for `127.0.0.1` and `localhost`).
    pub fn cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The mariadbd options that make a server speak TLS with this certificate.
    pub fn mariadbd_args(&self) -> Vec<String> {
        vec![
            format!("--ssl-cert={}", self.cert().display()),
            format!("--ssl-key={}", self.key().display()),
            format!("--ssl-ca={}", self.ca().display()),
        ]
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        TestCerts::new()
    }
}
