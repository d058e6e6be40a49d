//! The plaintext of a stored SSH credential, shared by the gateway (which seals it) and the
//! scan workers (which open it): one JSON document, `{"password": "…"}` or
//! `{"private_key": "…", "passphrase": "…" | null}`, sealed with the credential's id as
//! associated data so a ciphertext copied onto another row does not open. The plaintext only
//! ever lives in zeroed-on-drop buffers and [`SecretString`]s.

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{Cipher, CryptoError, Sealed, SealedRef};

/// An SSH secret: a password, or a private key with its optional passphrase.
pub enum CredentialSecret {
    /// Password authentication.
    Password(SecretString),
    /// Public-key authentication.
    PrivateKey {
        /// The key (OpenSSH or PEM text).
        key: SecretString,
        /// Its passphrase, when the key is encrypted.
        passphrase: Option<SecretString>,
    },
}

impl std::fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => f.write_str("CredentialSecret::Password(<redacted>)"),
            Self::PrivateKey { .. } => f.write_str("CredentialSecret::PrivateKey(<redacted>)"),
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum Wire<'a> {
    Password { password: &'a str },
    PrivateKey { private_key: &'a str, passphrase: Option<&'a str> },
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum WireOwned {
    Password { password: SecretString },
    PrivateKey { private_key: SecretString, passphrase: Option<SecretString> },
}

impl CredentialSecret {
    /// Seals the secret for the credential whose id bytes are `credential_id`.
    pub fn seal(&self, cipher: &Cipher, credential_id: &[u8]) -> Result<Sealed, CryptoError> {
        let wire = match self {
            Self::Password(password) => Wire::Password { password: password.expose_secret() },
            Self::PrivateKey { key, passphrase } => Wire::PrivateKey {
                private_key: key.expose_secret(),
                passphrase: passphrase.as_ref().map(|p| p.expose_secret()),
            },
        };
        let mut plaintext = Zeroizing::new(Vec::new());
        serde_json::to_writer(&mut *plaintext, &wire).map_err(|_| CryptoError::Encrypt)?;
        cipher.seal(&plaintext, credential_id)
    }

    /// Opens a sealed secret of the credential whose id bytes are `credential_id`.
    /// [`CryptoError::Decrypt`] when it does not open or is not a credential document.
    pub fn open(cipher: &Cipher, sealed: &SealedRef<'_>, credential_id: &[u8]) -> Result<Self, CryptoError> {
        let plaintext = cipher.open(sealed, credential_id)?;
        let wire: WireOwned =
            serde_json::from_slice(plaintext.expose_secret()).map_err(|_| CryptoError::Decrypt)?;
        Ok(match wire {
            WireOwned::Password { password } => Self::Password(password),
            WireOwned::PrivateKey { private_key, passphrase } => {
                Self::PrivateKey { key: private_key, passphrase }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cipher() -> Cipher {
        Cipher::from_config(&SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), &[]).unwrap()
    }

    #[test]
    fn both_kinds_round_trip_and_only_open_for_their_own_id() {
        let cipher = cipher();
        let password = CredentialSecret::Password(SecretString::from("hunter2-but-longer"));
        let sealed = password.seal(&cipher, b"credential-one").unwrap();
        match CredentialSecret::open(&cipher, &sealed.as_sealed_ref(), b"credential-one").unwrap() {
            CredentialSecret::Password(p) => assert_eq!(p.expose_secret(), "hunter2-but-longer"),
            other => panic!("{other:?}"),
        }
        assert!(CredentialSecret::open(&cipher, &sealed.as_sealed_ref(), b"credential-two").is_err());

        let key = CredentialSecret::PrivateKey {
            key: SecretString::from(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
            ),
            passphrase: None,
        };
        let sealed = key.seal(&cipher, b"k").unwrap();
        match CredentialSecret::open(&cipher, &sealed.as_sealed_ref(), b"k").unwrap() {
            CredentialSecret::PrivateKey { key, passphrase } => {
                assert!(key.expose_secret().starts_with("-----BEGIN"));
                assert!(passphrase.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(format!("{key:?}"), "CredentialSecret::PrivateKey(<redacted>)");
    }

    #[test]
    fn a_sealed_document_of_another_shape_is_refused() {
        let cipher = cipher();
        let sealed = cipher.seal(br#"{"token":"x"}"#, b"id").unwrap();
        assert!(CredentialSecret::open(&cipher, &sealed.as_sealed_ref(), b"id").is_err());
    }
}
