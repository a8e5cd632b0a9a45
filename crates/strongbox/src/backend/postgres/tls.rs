//! TLS for PostgreSQL connections: rustls, verifying the server.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::Config;
use crate::error::{Error, Result};

/// The TLS connector for a URL with `sslmode=require`: rustls, trusting the web's root
/// certificates plus `postgres_tls_ca_file`. Other modes connect in plain text (`prefer` is
/// treated as `disable`, so that a server with an unverifiable certificate is not a failure).
pub(super) fn tls_connector(
    pg_config: &tokio_postgres::Config,
    config: &Config,
) -> Result<Option<MakeRustlsConnect>> {
    if pg_config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let invalid = |what: String| Error::InvalidConfig(what);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &config.postgres_tls_ca_file {
        let certificates = CertificateDer::pem_file_iter(file).map_err(|error| {
            invalid(format!(
                "cannot read postgres_tls_ca_file {}: {error}",
                file.display()
            ))
        })?;
        for certificate in certificates {
            let certificate = certificate.map_err(|error| {
                invalid(format!(
                    "cannot parse postgres_tls_ca_file {}: {error}",
                    file.display()
                ))
            })?;
            roots.add(certificate).map_err(|error| {
                invalid(format!(
                    "cannot trust a certificate of {}: {error}",
                    file.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| invalid(format!("cannot set up TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls_config)))
}
