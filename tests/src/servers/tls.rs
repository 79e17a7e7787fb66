//! Certificates for TLS test servers, made by `rcgen` in the test: a CA and a server
//! certificate for `localhost` and `127.0.0.1` that it signed.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM files of a fresh CA and of a server certificate it signed for `localhost` and
/// `127.0.0.1`.
#[derive(Clone, Debug)]
pub struct TestCertificates {
    /// The CA certificate: what clients trust.
    pub ca_cert: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
}

impl TestCertificates {
    /// Generates the CA and the server certificate and writes them as `ca.pem`, `server.pem`
    /// and `server-key.pem` in `dir`.
    pub fn generate(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("generate the test CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "leader-election test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("self-sign the test CA");
        let ca = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the test server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate parameters");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("sign the test server certificate");

        let certificates = Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        };
        write(&certificates.ca_cert, &ca_cert.pem());
        write(&certificates.server_cert, &server_cert.pem());
        write(&certificates.server_key, &server_key.serialize_pem());
        certificates
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}
