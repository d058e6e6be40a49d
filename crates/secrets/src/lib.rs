//! Cryptographic primitives shared by the API gateway and the scan workers.
//!
//! Everything security-sensitive that more than one service needs lives here, so
//! that there is exactly one implementation to review: encryption of stored
//! credentials, password hashing, second-factor codes and opaque tokens.
//!
//! The crate does no IO. Its building blocks are `aws-lc-rs` (AES-256-GCM,
//! HMAC-SHA1, SHA-256, the system random generator, constant-time comparison;
//! the same library `jsonwebtoken` and `rustls` already link) and `argon2`.
//!
//! Secrets are carried in [`secrecy`] types, every type holding key material
//! implements `Debug` by hand to redact it, and no error message ever contains
//! a secret or key material.
//!
//! # Layout
//! * [`cipher`] — AES-256-GCM envelope encryption of secrets at rest, with key
//!   ids and rotation ([`Cipher`], [`MasterKey`], [`Sealed`], [`SealedRef`]).
//! * [`credential`] — the plaintext of a stored SSH credential (password or private key),
//!   sealed by the gateway and opened by the scan workers.
//! * [`password`] — Argon2id password hashing and verification, the password
//!   policy ([`PasswordPolicy`], [`PolicyViolation`]).
//! * [`totp`] — RFC 6238 time-based one-time passwords with replay protection
//!   ([`TotpSecret`]).
//! * [`tokens`] — random API tokens, refresh tokens and backup codes, SHA-256
//!   for storage look-ups, constant-time comparison.
//! * [`CryptoError`] — the one error type of the crate.

pub mod cipher;
pub mod credential;
pub mod password;
pub mod tokens;
pub mod totp;

pub use cipher::{Cipher, MasterKey, Sealed, SealedRef};
pub use credential::CredentialSecret;
pub use password::{PasswordPolicy, PolicyViolation, hash_password, verify_dummy, verify_password};
pub use totp::TotpSecret;

/// Everything that can go wrong in this crate.
///
/// Messages name the problem, never the secret or key involved.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A configured encryption key is malformed; fix the configuration.
    #[error("invalid {which} encryption key: {reason}")]
    InvalidKey {
        /// Which key: `active` or `previous[N]` (0-based position in the list).
        which: String,
        /// What is wrong with it (never the key itself).
        reason: String,
    },
    /// The record was sealed with a key that is neither the active key nor one of
    /// the previous keys: add the old key to the previous keys to read it.
    #[error("no configured encryption key has id {0}")]
    UnknownKeyId(String),
    /// Authentication failed: the ciphertext or nonce was altered or malformed,
    /// the associated data differs from the one used when sealing, or the key is wrong.
    #[error("decryption failed: the sealed record is corrupt or does not belong here")]
    Decrypt,
    /// The decrypted secret is not UTF-8 (it was sealed as bytes, not text).
    #[error("decrypted secret is not valid UTF-8")]
    InvalidUtf8,
    /// The AEAD implementation refused to encrypt (input too large).
    #[error("encryption failed")]
    Encrypt,
    /// The system random number generator failed; nothing secret can be produced.
    #[error("the system random number generator failed")]
    Random,
    /// Argon2 could not hash the password (e.g. out of memory).
    #[error("password hashing failed")]
    PasswordHash,
    /// A TOTP secret is malformed or too short.
    #[error("invalid TOTP secret: {0}")]
    InvalidTotpSecret(&'static str),
}

/// Fills `dest` from the system's cryptographically secure random generator.
pub(crate) fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(dest).map_err(|_| CryptoError::Random)
}

/// Lower-case hexadecimal encoding (used for key ids, which are not secret).
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_encodes_every_nibble() {
        assert_eq!(hex_lower(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        assert_eq!(hex_lower(&[]), "");
    }

    #[test]
    fn fill_random_produces_different_output() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Cipher>();
        assert_send_sync::<MasterKey>();
        assert_send_sync::<TotpSecret>();
        assert_send_sync::<CryptoError>();
    }
}
