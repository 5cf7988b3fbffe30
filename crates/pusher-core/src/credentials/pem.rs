//! PEM decoding shared by the checks: block labels, encrypted-key detection, and the
//! certificate and private-key blocks as DER.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::CredentialError;

/// PEM block labels in order of appearance, with whether the block carries RFC 1421
/// headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info`), which only old encrypted keys have.
fn pem_labels(pem: &str) -> Vec<(String, bool)> {
    let mut labels = Vec::new();
    let mut current: Option<(String, bool)> = None;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), false));
        } else if line.starts_with("-----END ") {
            if let Some(block) = current.take() {
                labels.push(block);
            }
        } else if let Some((_, headers)) = current.as_mut()
            && (line.starts_with("Proc-Type:") || line.starts_with("DEK-Info:"))
        {
            *headers = true;
        }
    }
    labels
}

/// The decoded certificate and private-key blocks of a PEM.
pub(super) struct PemParts {
    pub(super) certs: Vec<Vec<u8>>,
    pub(super) keys: Vec<(PrivateKeyDer<'static>, &'static str)>,
}

pub(super) fn pem_parts(pem: &str) -> Result<PemParts, CredentialError> {
    use rustls::pki_types::pem::SectionKind;
    for (label, encrypted_headers) in pem_labels(pem) {
        if label == "ENCRYPTED PRIVATE KEY" || (label.ends_with("PRIVATE KEY") && encrypted_headers)
        {
            return Err(CredentialError::EncryptedKey);
        }
    }
    let mut parts = PemParts {
        certs: Vec::new(),
        keys: Vec::new(),
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes()) {
        // The library's error names a line of the file; ours names only the problem.
        let (kind, der) = section.map_err(|_| {
            CredentialError::Pem("the PEM is damaged (a block does not decode)".into())
        })?;
        match kind {
            SectionKind::Certificate => parts.certs.push(der),
            SectionKind::PrivateKey => parts
                .keys
                .push((PrivatePkcs8KeyDer::from(der).into(), "PKCS#8")),
            SectionKind::RsaPrivateKey => parts
                .keys
                .push((PrivatePkcs1KeyDer::from(der).into(), "RSA (PKCS#1)")),
            SectionKind::EcPrivateKey => parts
                .keys
                .push((PrivateSec1KeyDer::from(der).into(), "EC (SEC1)")),
            _ => {}
        }
    }
    Ok(parts)
}

/// The public key (SubjectPublicKeyInfo DER) of a private key, or why it cannot be loaded.
pub(super) fn public_key_of(key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, CredentialError> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key).map_err(|_| {
        CredentialError::Pem(
            "the private key cannot be loaded (not an RSA or EC key this build supports)".into(),
        )
    })?;
    signer
        .public_key()
        .map(|spki| spki.as_ref().to_vec())
        .ok_or_else(|| CredentialError::Pem("the private key has no usable public key".into()))
}

/// Whether two SubjectPublicKeyInfo DERs hold the same key (algorithm and key bits;
/// encodings of the algorithm parameters may differ between libraries).
pub(super) fn same_public_key(a: &[u8], b: &[u8]) -> bool {
    match (
        SubjectPublicKeyInfo::from_der(a),
        SubjectPublicKeyInfo::from_der(b),
    ) {
        (Ok((_, a)), Ok((_, b))) => {
            a.algorithm.algorithm == b.algorithm.algorithm
                && a.subject_public_key.data == b.subject_public_key.data
        }
        _ => false,
    }
}
