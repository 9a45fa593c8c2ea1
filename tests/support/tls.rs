//! TLS for servers the tests start: a CA and a certificate for 127.0.0.1 it signed.

use std::path::Path;

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
pub fn certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "smartgrid test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let server_key = KeyPair::generate().expect("key");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");
}

/// mosquitto over TLS only, with the certificates [`certificates`] writes into `dir`
/// (clients trust `dir/ca.pem`), and `extra` configuration lines: the tests' IoT Hub.
pub fn tls_broker(dir: &Path, extra: &str) -> testkit::Mosquitto {
    certificates(dir);
    testkit::Mosquitto::start_with(&format!(
        "cafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key\n{extra}",
        dir.display()
    ))
}
