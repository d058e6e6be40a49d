//! AES-256-GCM envelope encryption of secrets at rest (SSH passwords, private keys,
//! TOTP secrets).
//!
//! Every service that reads or writes such a secret is configured with the same
//! *active* master key plus, during a rotation, the *previous* ones. A sealed record
//! stores the ciphertext (with the 16-byte GCM tag appended), the 96-bit random
//! nonce and the id of the key that sealed it. [`Cipher::open`] picks the key by
//! that id, so records sealed under a previous key stay readable until a background
//! job re-seals them with the active key ([`Cipher::is_active`] tells which).
//!
//! The key id is the first 16 hex characters of SHA-256 of the key bytes: every
//! replica derives the same id from the same key without coordination, and the id
//! reveals nothing useful about the key.
//!
//! Callers pass *associated data* that binds a ciphertext to its place, e.g.
//! `b"credential:<uuid>:password"`: a ciphertext copied into another row or column
//! then fails to open instead of silently decrypting there.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::{CryptoError, fill_random, hex_lower};

/// Length of a master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Number of hex characters in a key id.
const KEY_ID_HEX_LEN: usize = 16;

/// One AES-256-GCM master key together with its derived id.
///
/// `Debug` shows only the id.
pub struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl MasterKey {
    /// Parses a key from configuration: 32 bytes given as base64 (standard or
    /// URL-safe alphabet, padded or not) or as 64 hex characters. Surrounding
    /// whitespace is ignored. `which` names the key in error messages
    /// (e.g. `active`); the key itself never appears in them.
    pub fn parse(encoded: &SecretString, which: &str) -> Result<Self, CryptoError> {
        let invalid = |reason: String| CryptoError::InvalidKey { which: which.to_owned(), reason };
        let text = encoded.expose_secret().trim();
        if text.is_empty() {
            return Err(invalid("it is empty".to_owned()));
        }
        let bytes = decode_key_text(text).ok_or_else(|| {
            invalid(format!(
                "it is neither base64 nor hex (expected {KEY_LEN} bytes as base64 or {} hex characters)",
                KEY_LEN * 2
            ))
        })?;
        if bytes.len() != KEY_LEN {
            return Err(invalid(format!(
                "it decodes to {} bytes, expected {KEY_LEN} (generate one with `openssl rand -base64 32`)",
                bytes.len()
            )));
        }
        Self::from_bytes(&bytes).map_err(|_| invalid("AES-256-GCM rejected the key".to_owned()))
    }

    /// Builds a key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::InvalidKey {
                which: "raw".to_owned(),
                reason: format!("it is {} bytes long, expected {KEY_LEN}", bytes.len()),
            });
        }
        let fingerprint = digest(&SHA256, bytes);
        let mut id = hex_lower(fingerprint.as_ref());
        id.truncate(KEY_ID_HEX_LEN);
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::InvalidKey {
            which: "raw".to_owned(),
            reason: "AES-256-GCM rejected the key".to_owned(),
        })?;
        Ok(Self { id, key: LessSafeKey::new(unbound) })
    }

    /// Generates a fresh random key, returned base64-encoded (standard alphabet,
    /// padded) in the form [`MasterKey::parse`] accepts: for operators creating
    /// the initial key or the next one in a rotation.
    pub fn generate_encoded() -> Result<SecretString, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(SecretString::from(STANDARD.encode(bytes.as_ref())))
    }

    /// The key id stored next to every record this key seals (16 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Decodes hex (exactly 64 characters) or any of the four base64 flavours.
/// Returns the decoded bytes in a buffer that is wiped on drop.
fn decode_key_text(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() == KEY_LEN * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = text
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| Some((hex_value(pair[0])? << 4) | hex_value(pair[1])?))
            .collect::<Option<Vec<u8>>>()?;
        return Some(Zeroizing::new(bytes));
    }
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .into_iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A sealed secret, as stored: all three fields are needed to open it, none is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Ciphertext followed by the 16-byte GCM authentication tag.
    pub ciphertext: Vec<u8>,
    /// The random 96-bit nonce used for this record.
    pub nonce: [u8; NONCE_LEN],
    /// Id of the master key that sealed it ([`MasterKey::id`]).
    pub key_id: String,
}

impl Sealed {
    /// Borrows the record for [`Cipher::open`].
    pub fn as_sealed_ref(&self) -> SealedRef<'_> {
        SealedRef { ciphertext: &self.ciphertext, nonce: &self.nonce, key_id: &self.key_id }
    }
}

/// A borrowed sealed record, typically straight from database columns.
///
/// `nonce` is a slice because that is what a `bytea` column yields; a nonce that
/// is not 12 bytes long makes [`Cipher::open`] fail with [`CryptoError::Decrypt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRef<'a> {
    /// Ciphertext followed by the 16-byte GCM authentication tag.
    pub ciphertext: &'a [u8],
    /// The 96-bit nonce stored with the record.
    pub nonce: &'a [u8],
    /// Id of the key that sealed the record.
    pub key_id: &'a str,
}

/// Seals with the active key and opens with whichever configured key sealed the record.
///
/// Build it once at startup and share it (it is `Send + Sync`). `Debug` shows key ids only.
pub struct Cipher {
    active: MasterKey,
    previous: Vec<MasterKey>,
}

impl Cipher {
    /// Builds the cipher from configuration: the active key and the keys of earlier
    /// rotations (each in a form [`MasterKey::parse`] accepts). A previous key equal
    /// to the active key, or repeated, is ignored.
    pub fn from_config(active: &SecretString, previous: &[SecretString]) -> Result<Self, CryptoError> {
        let active = MasterKey::parse(active, "active")?;
        let mut keys: Vec<MasterKey> = Vec::with_capacity(previous.len());
        for (index, encoded) in previous.iter().enumerate() {
            let key = MasterKey::parse(encoded, &format!("previous[{index}]"))?;
            if key.id != active.id && keys.iter().all(|k| k.id != key.id) {
                keys.push(key);
            }
        }
        Ok(Self { active, previous: keys })
    }

    /// Builds the cipher from already parsed keys.
    pub fn new(active: MasterKey, previous: Vec<MasterKey>) -> Self {
        let previous = previous.into_iter().filter(|k| k.id != active.id).collect();
        Self { active, previous }
    }

    /// Id of the key that [`Cipher::seal`] uses.
    pub fn active_key_id(&self) -> &str {
        &self.active.id
    }

    /// Whether a record sealed under `key_id` is already under the active key
    /// (if not, a rotation job should re-seal it).
    pub fn is_active(&self, key_id: &str) -> bool {
        self.active.id == key_id
    }

    /// Encrypts `plaintext` under the active key with a fresh random nonce, binding
    /// it to `associated_data` (which is authenticated, not encrypted, and not stored).
    pub fn seal(&self, plaintext: &[u8], associated_data: &[u8]) -> Result<Sealed, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut in_out = plaintext.to_vec();
        self.active
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated_data),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Encrypt)?;
        Ok(Sealed { ciphertext: in_out, nonce, key_id: self.active.id.clone() })
    }

    /// Decrypts a record with the key it names, checking `associated_data`.
    ///
    /// Errors: [`CryptoError::UnknownKeyId`] when no configured key has the
    /// record's id; [`CryptoError::Decrypt`] when the record was altered, the
    /// nonce is malformed or the associated data differs.
    pub fn open(
        &self,
        sealed: &SealedRef<'_>,
        associated_data: &[u8],
    ) -> Result<SecretSlice<u8>, CryptoError> {
        let key = self.key_for(sealed.key_id)?;
        let nonce = Nonce::try_assume_unique_for_key(sealed.nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut in_out = Zeroizing::new(sealed.ciphertext.to_vec());
        let plaintext = key
            .key
            .open_in_place(nonce, Aad::from(associated_data), in_out.as_mut_slice())
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretSlice::from(plaintext.to_vec()))
    }

    /// Like [`Cipher::open`] for secrets sealed from text (passwords, PEM keys).
    pub fn open_string(
        &self,
        sealed: &SealedRef<'_>,
        associated_data: &[u8],
    ) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, associated_data)?;
        let text = std::str::from_utf8(bytes.expose_secret()).map_err(|_| CryptoError::InvalidUtf8)?;
        Ok(SecretString::from(text))
    }

    fn key_for(&self, key_id: &str) -> Result<&MasterKey, CryptoError> {
        std::iter::once(&self.active)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(key_id.to_owned()))
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Cipher")
            .field("active_key_id", &self.active.id)
            .field("previous_key_ids", &previous)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: [u8; 32] = [7u8; 32];
    const KEY_B: [u8; 32] = [9u8; 32];

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    fn b64(bytes: &[u8]) -> SecretString {
        secret(&STANDARD.encode(bytes))
    }

    fn cipher_a() -> Cipher {
        Cipher::from_config(&b64(&KEY_A), &[]).unwrap()
    }

    #[test]
    fn round_trip() {
        let cipher = cipher_a();
        let sealed = cipher.seal(b"hunter2", b"credential:1:password").unwrap();
        assert_eq!(sealed.key_id, cipher.active_key_id());
        assert_eq!(sealed.ciphertext.len(), b"hunter2".len() + 16);
        let opened = cipher.open(&sealed.as_sealed_ref(), b"credential:1:password").unwrap();
        assert_eq!(opened.expose_secret(), b"hunter2");
        let text = cipher.open_string(&sealed.as_sealed_ref(), b"credential:1:password").unwrap();
        assert_eq!(text.expose_secret(), "hunter2");
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let cipher = cipher_a();
        let sealed = cipher.seal(b"", b"ad").unwrap();
        assert!(cipher.open(&sealed.as_sealed_ref(), b"ad").unwrap().expose_secret().is_empty());
    }

    #[test]
    fn wrong_associated_data_fails() {
        let cipher = cipher_a();
        let sealed = cipher.seal(b"hunter2", b"credential:1:password").unwrap();
        let err = cipher.open(&sealed.as_sealed_ref(), b"credential:2:password").unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt), "{err:?}");
    }

    #[test]
    fn flipped_bit_fails_anywhere() {
        let cipher = cipher_a();
        let sealed = cipher.seal(b"hunter2", b"ad").unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut tampered = sealed.clone();
            tampered.ciphertext[i] ^= 0x01;
            let err = cipher.open(&tampered.as_sealed_ref(), b"ad").unwrap_err();
            assert!(matches!(err, CryptoError::Decrypt), "byte {i}: {err:?}");
        }
        let mut tampered = sealed.clone();
        tampered.nonce[0] ^= 0x80;
        assert!(matches!(cipher.open(&tampered.as_sealed_ref(), b"ad"), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn truncated_ciphertext_or_bad_nonce_length_fails() {
        let cipher = cipher_a();
        let sealed = cipher.seal(b"hunter2", b"ad").unwrap();
        let short = SealedRef { ciphertext: &sealed.ciphertext[..10], ..sealed.as_sealed_ref() };
        assert!(matches!(cipher.open(&short, b"ad"), Err(CryptoError::Decrypt)));
        let bad_nonce = SealedRef { nonce: &sealed.nonce[..11], ..sealed.as_sealed_ref() };
        assert!(matches!(cipher.open(&bad_nonce, b"ad"), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn previous_key_still_opens_after_rotation() {
        let old = cipher_a();
        let sealed = old.seal(b"legacy", b"ad").unwrap();

        let rotated = Cipher::from_config(&b64(&KEY_B), &[b64(&KEY_A)]).unwrap();
        assert_ne!(rotated.active_key_id(), old.active_key_id());
        assert!(!rotated.is_active(&sealed.key_id));
        let opened = rotated.open(&sealed.as_sealed_ref(), b"ad").unwrap();
        assert_eq!(opened.expose_secret(), b"legacy");

        let resealed = rotated.seal(opened.expose_secret(), b"ad").unwrap();
        assert!(rotated.is_active(&resealed.key_id));
    }

    #[test]
    fn unknown_key_id_errors() {
        let sealed = cipher_a().seal(b"x", b"ad").unwrap();
        let other = Cipher::from_config(&b64(&KEY_B), &[]).unwrap();
        match other.open(&sealed.as_sealed_ref(), b"ad") {
            Err(CryptoError::UnknownKeyId(id)) => assert_eq!(id, sealed.key_id),
            other => panic!("expected UnknownKeyId, got {other:?}"),
        }
    }

    #[test]
    fn same_key_id_but_different_key_fails_to_decrypt() {
        let cipher = cipher_a();
        let mut sealed = cipher.seal(b"x", b"ad").unwrap();
        let other = Cipher::from_config(&b64(&KEY_B), &[]).unwrap();
        sealed.key_id = other.active_key_id().to_owned();
        assert!(matches!(other.open(&sealed.as_sealed_ref(), b"ad"), Err(CryptoError::Decrypt)));
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let cipher = cipher_a();
        let a = cipher.seal(b"same", b"ad").unwrap();
        let b = cipher.seal(b"same", b"ad").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn key_id_is_truncated_sha256_of_key_bytes() {
        // SHA-256 of 32 zero bytes = 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925
        let key = MasterKey::from_bytes(&[0u8; 32]).unwrap();
        assert_eq!(key.id(), "66687aadf862bd77");
    }

    #[test]
    fn every_accepted_encoding_gives_the_same_key() {
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(251)).collect();
        let expected = MasterKey::from_bytes(&bytes).unwrap();
        let encodings = [
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            URL_SAFE_NO_PAD.encode(&bytes),
            hex_lower(&bytes),
            hex_lower(&bytes).to_uppercase(),
            format!("  {}\n", STANDARD.encode(&bytes)),
        ];
        // The test bytes must exercise the alphabet difference between standard and URL-safe.
        assert!(encodings[0].contains(['+', '/']), "{}", encodings[0]);
        for encoded in encodings {
            let key = MasterKey::parse(&secret(&encoded), "active").unwrap();
            assert_eq!(key.id(), expected.id(), "{encoded}");
        }
    }

    #[test]
    fn bad_keys_are_rejected_without_echoing_them() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("not a key at all!!", "neither base64 nor hex"),
            (&STANDARD.encode([1u8; 16]), "decodes to 16 bytes"),
            (&STANDARD.encode([1u8; 33]), "decodes to 33 bytes"),
            (&"ab".repeat(31), "neither base64 nor hex"),
            (&format!("{}g$", "ab".repeat(31)), "neither base64 nor hex"),
            (&"AA".repeat(33), "decodes to 49 bytes"),
        ];
        for (input, expected) in cases {
            let err = MasterKey::parse(&secret(input), "previous[3]").unwrap_err();
            let message = err.to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(message.contains("previous[3]"), "{message}");
            if !input.trim().is_empty() {
                assert!(!message.contains(input.trim()), "message echoes the key: {message}");
            }
        }
    }

    #[test]
    fn from_config_names_the_bad_previous_key() {
        let err = Cipher::from_config(&b64(&KEY_A), &[b64(&KEY_B), secret("short")]).unwrap_err();
        assert!(err.to_string().contains("previous[1]"), "{err}");
    }

    #[test]
    fn duplicate_previous_keys_are_ignored() {
        let cipher = Cipher::from_config(&b64(&KEY_A), &[b64(&KEY_A), b64(&KEY_B), b64(&KEY_B)]).unwrap();
        assert_eq!(cipher.previous.len(), 1);
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = MasterKey::generate_encoded().unwrap();
        let b = MasterKey::generate_encoded().unwrap();
        let ka = MasterKey::parse(&a, "active").unwrap();
        let kb = MasterKey::parse(&b, "active").unwrap();
        assert_ne!(ka.id(), kb.id());
    }

    #[test]
    fn debug_output_shows_ids_only() {
        let encoded = STANDARD.encode(KEY_A);
        let cipher = Cipher::from_config(&secret(&encoded), &[b64(&KEY_B)]).unwrap();
        let debug = format!("{cipher:?} {:?}", cipher.active);
        assert!(debug.contains(cipher.active_key_id()), "{debug}");
        assert!(!debug.contains(&encoded), "{debug}");
        assert!(!debug.contains("7, 7, 7"), "{debug}");
    }
}
