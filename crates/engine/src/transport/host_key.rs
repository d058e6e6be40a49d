//! Host key verification: which keys a host may present, and the fingerprints compared.
//!
//! Keys are identified by their SHA-256 fingerprint in OpenSSH's notation
//! (`SHA256:` + unpadded base64 of the digest of the key blob), exactly what
//! `ssh-keygen -lf` and `ssh` print, so an operator can paste one from either.

use super::TransportError;

/// Which host keys to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only a host presenting one of `known` is accepted; with `known` empty every
    /// connection fails with [`TransportError::HostKeyUnknown`].
    Strict {
        /// Accepted fingerprints (`SHA256:…`).
        known: Vec<String>,
    },
    /// With `known` empty, any key is accepted and reported through
    /// [`super::SshTransport::observed_host_key`] so the caller can record it; with keys
    /// known, behaves like [`HostKeyPolicy::Strict`].
    TrustOnFirstUse {
        /// Accepted fingerprints (`SHA256:…`); empty on first contact.
        known: Vec<String>,
    },
}

impl HostKeyPolicy {
    /// Accepts or refuses the key `observed` presented by `target` (`host:port`).
    pub fn check(&self, target: &str, observed: &HostKeyInfo) -> Result<(), TransportError> {
        let (known, strict) = match self {
            HostKeyPolicy::Strict { known } => (known, true),
            HostKeyPolicy::TrustOnFirstUse { known } => (known, false),
        };
        if known.is_empty() {
            return if strict {
                Err(TransportError::HostKeyUnknown {
                    target: target.to_owned(),
                    actual: observed.fingerprint_sha256.clone(),
                })
            } else {
                Ok(())
            };
        }
        let actual = normalize(&observed.fingerprint_sha256);
        if known.iter().any(|k| normalize(k) == actual) {
            Ok(())
        } else {
            Err(TransportError::HostKeyMismatch {
                target: target.to_owned(),
                expected: known.clone(),
                actual: observed.fingerprint_sha256.clone(),
            })
        }
    }
}

/// Compares fingerprints the way an operator means them: surrounding blanks and base64
/// padding do not matter; the `SHA256:` prefix and the base64 text (case-sensitive) do.
fn normalize(fingerprint: &str) -> &str {
    fingerprint.trim().trim_end_matches('=')
}

/// The key a host presented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostKeyInfo {
    /// The key algorithm as OpenSSH names it (`ssh-ed25519`, `ecdsa-sha2-nistp256`,
    /// `ssh-rsa`, …).
    pub key_type: String,
    /// `SHA256:` + unpadded base64 of the SHA-256 digest of the key blob.
    pub fingerprint_sha256: String,
}

impl HostKeyInfo {
    /// Builds the info from the raw key blob (for its type name) and its SHA-256 digest.
    pub fn from_blob_and_digest(blob: &[u8], sha256: &[u8]) -> HostKeyInfo {
        HostKeyInfo { key_type: key_type_of(blob), fingerprint_sha256: fingerprint_from_digest(sha256) }
    }
}

/// `SHA256:` + unpadded standard base64 of `digest`, as OpenSSH prints it.
pub fn fingerprint_from_digest(digest: &[u8]) -> String {
    format!("SHA256:{}", base64_unpadded(digest))
}

/// The algorithm name at the start of an SSH key blob (a length-prefixed string), or
/// `unknown` for a malformed blob.
fn key_type_of(blob: &[u8]) -> String {
    let Some((len, rest)) = blob.split_first_chunk::<4>() else {
        return "unknown".to_owned();
    };
    let len = u32::from_be_bytes(*len) as usize;
    match rest.get(..len).map(std::str::from_utf8) {
        Some(Ok(name)) if !name.is_empty() && name.is_ascii() => name.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// Standard-alphabet base64 without padding (RFC 4648 §4), enough for fingerprints.
fn base64_unpadded(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors_without_padding() {
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foob"), "Zm9vYg");
        assert_eq!(base64_unpadded(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_unpadded(&[0xfb, 0xff]), "+/8");
    }

    #[test]
    fn key_type_is_read_from_the_blob() {
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(key_type_of(&blob), "ssh-ed25519");
        assert_eq!(key_type_of(&[0, 0, 0, 50, b'x']), "unknown");
        assert_eq!(key_type_of(&[0]), "unknown");
    }

    fn observed() -> HostKeyInfo {
        HostKeyInfo { key_type: "ssh-ed25519".into(), fingerprint_sha256: "SHA256:abc".into() }
    }

    #[test]
    fn strict_accepts_a_known_key_and_refuses_others() {
        let ok = HostKeyPolicy::Strict { known: vec!["SHA256:zzz".into(), " SHA256:abc= ".into()] };
        assert!(ok.check("h:22", &observed()).is_ok());
        let bad = HostKeyPolicy::Strict { known: vec!["SHA256:zzz".into()] };
        let err = bad.check("h:22", &observed()).unwrap_err();
        assert_eq!(err.code(), "host_key_mismatch");
        let unknown = HostKeyPolicy::Strict { known: vec![] };
        assert_eq!(unknown.check("h:22", &observed()).unwrap_err().code(), "host_key_unknown");
    }

    #[test]
    fn tofu_accepts_anything_first_then_only_known_keys() {
        assert!(HostKeyPolicy::TrustOnFirstUse { known: vec![] }.check("h:22", &observed()).is_ok());
        let known = HostKeyPolicy::TrustOnFirstUse { known: vec!["SHA256:zzz".into()] };
        assert_eq!(known.check("h:22", &observed()).unwrap_err().code(), "host_key_mismatch");
    }
}
