//! HTTPS: `custodian serve --tls-cert --tls-key` with a self-signed certificate made
//! here, fetched with a client that trusts only that certificate; and the start refused,
//! with a message naming the problem, when a file is missing or bad.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::TestServer;
use rustls::pki_types::{CertificateDer, ServerName};

struct Certificate {
    der: CertificateDer<'static>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`.
fn certificate(dir: &Path, name: &str) -> Certificate {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    Certificate {
        der: cert.der().clone(),
        cert_file,
        key_file,
    }
}

fn client_config(trusted: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    #[allow(deprecated)] // The `ring` provider, as the server uses.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// `GET path` over TLS to `address`, trusting only `trusted`: the status and the text.
fn https_get(
    address: &str,
    path: &str,
    trusted: &CertificateDer<'static>,
) -> std::io::Result<(u16, String)> {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(client_config(trusted), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(address)?);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/fhir+json\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // A server may close without a TLS close_notify once the response is out.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
        }
        Err(error) => return Err(error),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

#[test]
fn https_serves_health_and_metadata_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let server_cert = certificate(files.path(), "server");
    let server = TestServer::start_in(
        dir.path(),
        &[
            "--tls-cert",
            server_cert.cert_file.to_str().unwrap(),
            "--tls-key",
            server_cert.key_file.to_str().unwrap(),
        ],
    );
    let address = server
        .origin
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("not an https origin: {}", server.origin))
        .to_string();

    let (status, text) = https_get(&address, "/health", &server_cert.der).unwrap();
    assert_eq!(status, 200, "{text}");
    let (status, text) = https_get(&address, "/fhir/metadata", &server_cert.der).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"CapabilityStatement\""), "{text}");
    // The CapabilityStatement names the https base.
    assert!(text.contains(&format!("https://{address}/fhir")), "{text}");

    // A client that trusts another certificate refuses this server's.
    let other = certificate(files.path(), "other");
    assert!(https_get(&address, "/health", &other.der).is_err());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&address).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // A stalled handshake holds up no one.
    let _stalled = TcpStream::connect(&address).unwrap();
    let (status, _) = https_get(&address, "/health", &server_cert.der).unwrap();
    assert_eq!(status, 200);
}

fn serve(dir: &Path, tls: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--database",
        ])
        .arg(format!("sqlite:{}", dir.display()))
        .args(tls)
        .env_remove("CUSTODIAN_TLS_CERT")
        .env_remove("CUSTODIAN_TLS_KEY")
        .output()
        .expect("run custodian")
}

fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "serve started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_a_lone_or_bad_tls_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let good = certificate(files.path(), "good");
    let other = certificate(files.path(), "other");
    let (cert, key) = (
        good.cert_file.to_str().unwrap(),
        good.key_file.to_str().unwrap(),
    );

    let message = refused(&serve(dir.path(), &["--tls-cert", cert]));
    assert!(message.contains("--tls-key"), "{message}");
    let message = refused(&serve(dir.path(), &["--tls-key", key]));
    assert!(message.contains("--tls-cert"), "{message}");

    let missing = files.path().join("missing.crt");
    let message = refused(&serve(
        dir.path(),
        &["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
    ));
    assert!(message.contains("missing.crt"), "{message}");

    let garbage = files.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let message = refused(&serve(
        dir.path(),
        &["--tls-cert", garbage.to_str().unwrap(), "--tls-key", key],
    ));
    assert!(message.contains("holds no certificate"), "{message}");

    // A certificate as the key.
    let message = refused(&serve(dir.path(), &["--tls-cert", cert, "--tls-key", cert]));
    assert!(message.contains("private key"), "{message}");

    // The key of another certificate.
    let message = refused(&serve(
        dir.path(),
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            other.key_file.to_str().unwrap(),
        ],
    ));
    assert!(message.contains("cannot be used together"), "{message}");
}
