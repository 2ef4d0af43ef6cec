//! Credentials: an operator's enrollment token (`controller.enrollment_token_file`) is
//! exchanged once for a per-instance secret (`POST /v1/enroll`), kept in
//! `var/lib/hostmanager/controller-credential.json` (0600, written atomically) and used as the
//! bearer from then on; the controller asks for a new one before it expires
//! (`POST /v1/hosts/{id}/credential`). The enrollment token is read when needed and never
//! stored; neither secret is logged (both live in redacting types).

use std::path::{Path, PathBuf};

use sha2::Digest;

use super::LinkError;
use super::http::{Encoding, Failure, post_json};
use crate::secret::Secret;
use hostmanager_protocol::{Credential, EnrollRequest};

/// Where the issued credential lives.
#[derive(Debug, Clone)]
pub struct CredentialFile {
    path: PathBuf,
}

impl CredentialFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("controller-credential.json"),
        }
    }

    /// The stored credential; an unreadable file counts as none (enrollment runs again).
    pub fn load(&self) -> Option<Credential> {
        crate::fsutil::read_json(&self.path)
            .inspect_err(|error| tracing::warn!(%error, path = %self.path.display(), "ignoring the controller credential"))
            .ok()
            .flatten()
    }

    /// Replaces the file atomically: a crash leaves the old credential or the new one.
    pub fn save(&self, credential: &Credential) -> Result<(), Failure> {
        crate::fsutil::write_json_atomic(&self.path, credential, 0o600).map_err(|error| {
            Failure::Other(format!(
                "cannot store the controller credential in {}: {error}",
                self.path.display()
            ))
        })
    }
}

/// `POST {url}/v1/enroll` with the enrollment token as bearer.
pub async fn enroll(
    client: &reqwest::Client,
    url: &str,
    token: &Secret<String>,
    request: &EnrollRequest,
) -> Result<Credential, Failure> {
    let url = format!("{}/v1/enroll", url.trim_end_matches('/'));
    post_json(
        client,
        &url,
        Some(token.expose()),
        request,
        Encoding::Identity,
    )
    .await
    .map_err(|failure| prefix(failure, "enrollment"))
}

/// `POST {url}/v1/hosts/{id}/credential` with the current bearer.
pub async fn rotate(
    client: &reqwest::Client,
    url: &str,
    instance_id: &str,
    bearer: Option<&str>,
) -> Result<Credential, Failure> {
    let url = format!(
        "{}/v1/hosts/{instance_id}/credential",
        url.trim_end_matches('/')
    );
    post_json(
        client,
        &url,
        bearer,
        &serde_json::json!({}),
        Encoding::Identity,
    )
    .await
    .map_err(|failure| prefix(failure, "credential rotation"))
}

fn prefix(failure: Failure, what: &str) -> Failure {
    match failure {
        Failure::Other(message) => Failure::Other(format!("{what}: {message}")),
        Failure::Http {
            status,
            message,
            retry_after,
            revoked,
        } => Failure::Http {
            status,
            message: format!("{what}: {message}"),
            retry_after,
            revoked,
        },
    }
}

/// sha256 (hex) of the machine id (`/etc/machine-id`, trimmed): the controller refuses the
/// same instance id enrolling again from another machine.
pub fn machine_fingerprint(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        Failure::Other(format!(
            "controller.machine_id_file {}: {error}",
            path.display()
        ))
    })?;
    Ok(fingerprint_of(text.trim()))
}

fn fingerprint_of(machine_id: &str) -> String {
    let digest = sha2::Sha256::digest(machine_id.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A bearer token file (trimmed), warning when others may read it.
pub fn read_token(path: &Path) -> Result<Secret<String>, LinkError> {
    use std::os::unix::fs::PermissionsExt;
    let token = |source| LinkError::Token {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(token)?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the controller token file is readable by others; chmod 600 it");
    }
    let text = std::fs::read_to_string(path).map_err(token)?;
    Ok(Secret::new(text.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_trimmed_machine_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("machine-id");
        std::fs::write(&path, "abc\n").expect("write");
        assert_eq!(
            machine_fingerprint(&path).expect("fingerprint"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let missing = machine_fingerprint(&dir.path().join("none")).expect_err("missing");
        assert!(missing.to_string().contains("controller.machine_id_file"));
    }

    #[test]
    fn credentials_are_stored_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CredentialFile::new(dir.path());
        assert!(file.load().is_none());
        let credential = Credential {
            instance_id: "i-1".into(),
            environment: "prod".into(),
            secret: "s".into(),
            expires_ms: 1,
            interval_ms: 10_000,
        };
        file.save(&credential).expect("save");
        assert_eq!(file.load(), Some(credential.clone()));
        let mode = std::fs::metadata(dir.path().join("controller-credential.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !format!("{credential:?}").contains("\"s\""),
            "Debug hides the secret"
        );
    }
}
