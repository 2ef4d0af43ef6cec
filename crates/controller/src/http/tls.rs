//! TLS for the listener, from a PEM certificate chain and key (rustls).

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::PrivateKeyDer};

use crate::config::TlsFiles;

pub fn acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| describe(&files.cert_file, &e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| describe(&files.cert_file, &e.to_string()))?;
    if certs.is_empty() {
        return Err(describe(&files.cert_file, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| describe(&files.key_file, &e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls_cert_file / tls_key_file: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn describe(path: &Path, message: &str) -> String {
    format!("{}: {message}", path.display())
}
