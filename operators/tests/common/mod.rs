//! Helpers shared by the integration tests that need TLS and logins: a test CA with
//! server and client certificates (rcgen), and mosquitto password files.

use std::path::Path;
use std::process::Command;

/// Writes the CA, the server certificate (for 127.0.0.1 and localhost) and its key.
pub fn make_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "smartgrid test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate().expect("server key");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");

    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), server_cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).expect("write");

    // A second, unrelated CA, to check that verification really happens.
    let mut other_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_key = KeyPair::generate().expect("key");
    let other = other_params.self_signed(&other_key).expect("other CA");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write");

    // A client certificate signed by the CA, for X.509 device authentication.
    let mut device_params =
        CertificateParams::new(vec!["device-x509".to_string()]).expect("params");
    device_params
        .distinguished_name
        .push(DnType::CommonName, "device-x509");
    let device_key = KeyPair::generate().expect("device key");
    let device_cert = device_params
        .signed_by(&device_key, &issuer)
        .expect("device certificate");
    std::fs::write(dir.join("device.pem"), device_cert.pem()).expect("write");
    std::fs::write(dir.join("device.key"), device_key.serialize_pem()).expect("write");
}

pub fn make_password_file(path: &Path, user: &str, password: &str) {
    set_password(path, user, password, true);
}

/// Adds `user` to an existing password file, or changes its password.
#[allow(dead_code)]
pub fn add_password(path: &Path, user: &str, password: &str) {
    set_password(path, user, password, false);
}

fn set_password(path: &Path, user: &str, password: &str, create: bool) {
    let mut command = Command::new(testkit::find_binary("mosquitto_passwd").expect("found"));
    if create {
        command.arg("-c");
    }
    let status = command
        .arg("-b")
        .arg(path)
        .arg(user)
        .arg(password)
        .status()
        .expect("run mosquitto_passwd");
    assert!(status.success(), "mosquitto_passwd failed: {status}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}
