//! Random opaque tokens: API tokens, refresh tokens and MFA backup codes.
//!
//! Tokens are 256-bit random values, so a fast hash is enough to store them: the
//! database keeps only [`sha256`] of each token and finds it by that digest. A
//! short, non-secret prefix of each API token is kept in clear so that users can
//! tell their tokens apart in listings. The type prefixes (`owk_` for API keys,
//! `owr_` for refresh tokens) make leaked tokens recognisable to secret scanners.
//!
//! Backup codes are shorter (40 bits, `xxxx-xxxx`) because people type them; they
//! are single-use and rate-limited by the caller. Their alphabet is Crockford's
//! base32 in lower case, which has no `i`, `l`, `o` or `u`, so nothing looks alike;
//! [`normalize_backup_code`] maps what a user typed back to the stored form.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use crate::{CryptoError, fill_random};

/// Type prefix of API tokens.
pub const API_TOKEN_PREFIX: &str = "owk_";
/// Type prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "owr_";
/// Characters of an API token kept in clear for display (`owk_` plus 8).
pub const API_TOKEN_DISPLAY_PREFIX_LEN: usize = 12;
/// Random bytes in API and refresh tokens.
const TOKEN_BYTES: usize = 32;
/// Lower-case Crockford base32: no `i`, `l`, `o`, `u`.
const BACKUP_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Generates an API token (`owk_` + 43 base64url characters of 32 random bytes)
/// and its display prefix (the first 12 characters, safe to store and show).
pub fn generate_api_token() -> Result<(SecretString, String), CryptoError> {
    let token = random_token(API_TOKEN_PREFIX)?;
    let prefix = token.chars().take(API_TOKEN_DISPLAY_PREFIX_LEN).collect();
    Ok((SecretString::from(token.as_str()), prefix))
}

/// Generates a refresh token: `owr_` + 43 base64url characters of 32 random bytes.
pub fn generate_refresh_token() -> Result<SecretString, CryptoError> {
    Ok(SecretString::from(random_token(REFRESH_TOKEN_PREFIX)?.as_str()))
}

fn random_token(prefix: &str) -> Result<Zeroizing<String>, CryptoError> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    fill_random(bytes.as_mut())?;
    let mut token = Zeroizing::new(String::with_capacity(prefix.len() + 43));
    token.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut token);
    Ok(token)
}

/// Generates `n` single-use backup codes of the form `xxxx-xxxx` (40 random bits each).
pub fn generate_backup_codes(n: usize) -> Result<Vec<SecretString>, CryptoError> {
    (0..n)
        .map(|_| {
            let mut bytes = Zeroizing::new([0u8; 5]);
            fill_random(bytes.as_mut())?;
            let bits = Zeroizing::new(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)));
            let mut code = Zeroizing::new(String::with_capacity(9));
            for i in 0..8 {
                if i == 4 {
                    code.push('-');
                }
                let index = (*bits >> (35 - 5 * i)) & 0x1f;
                code.push(char::from(BACKUP_ALPHABET[index as usize]));
            }
            Ok(SecretString::from(code.as_str()))
        })
        .collect()
}

/// Brings a backup code as typed by a user into its canonical `xxxx-xxxx` form
/// (the form to hash and compare): ignores case, spaces and dashes, and reads the
/// look-alikes `o` as `0` and `i`/`l` as `1`. Returns `None` if it cannot be a code.
pub fn normalize_backup_code(input: &str) -> Option<String> {
    let mut code = String::with_capacity(9);
    let mut symbols = 0usize;
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && BACKUP_ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        match symbols {
            4 => code.push('-'),
            8 => return None,
            _ => {}
        }
        code.push(c);
        symbols += 1;
    }
    (symbols == 8).then_some(code)
}

/// SHA-256 of a token, the value stored and looked up instead of the token itself.
pub fn sha256(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// Compares two byte strings in time independent of their contents (the length is not hidden).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn api_token_shape_and_prefix() {
        let (token, prefix) = generate_api_token().unwrap();
        let token = token.expose_secret();
        assert_eq!(token.len(), 4 + 43);
        assert!(token.starts_with("owk_"));
        assert!(token[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&token[4..]).unwrap().len(), 32);
        assert_eq!(prefix.len(), 12);
        assert!(token.starts_with(&prefix));
    }

    #[test]
    fn refresh_token_shape() {
        let token = generate_refresh_token().unwrap();
        let token = token.expose_secret();
        assert!(token.starts_with("owr_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token[4..]).unwrap().len(), 32);
    }

    #[test]
    fn tokens_are_unique() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            assert!(seen.insert(generate_api_token().unwrap().0.expose_secret().to_owned()));
            assert!(seen.insert(generate_refresh_token().unwrap().expose_secret().to_owned()));
        }
    }

    #[test]
    fn backup_codes_have_the_documented_format() {
        let codes = generate_backup_codes(10).unwrap();
        assert_eq!(codes.len(), 10);
        let unique: HashSet<&str> = codes.iter().map(|c| c.expose_secret()).collect();
        assert_eq!(unique.len(), 10);
        for code in &codes {
            let code = code.expose_secret();
            assert_eq!(code.len(), 9, "{code}");
            assert_eq!(&code[4..5], "-");
            assert!(code.bytes().filter(|&b| b != b'-').all(|b| BACKUP_ALPHABET.contains(&b)), "{code}");
            assert_eq!(normalize_backup_code(code).as_deref(), Some(code));
        }
        assert!(generate_backup_codes(0).unwrap().is_empty());
    }

    #[test]
    fn backup_codes_use_the_whole_alphabet() {
        // 200 codes x 8 symbols: missing any of the 32 symbols would mean a biased encoder.
        let codes = generate_backup_codes(200).unwrap();
        let used: HashSet<u8> = codes
            .iter()
            .flat_map(|c| c.expose_secret().bytes().collect::<Vec<_>>())
            .filter(|&b| b != b'-')
            .collect();
        assert_eq!(used.len(), 32);
    }

    #[test]
    fn backup_alphabet_is_unambiguous_and_gives_40_bits() {
        assert_eq!(BACKUP_ALPHABET.len(), 32);
        for ambiguous in [b'i', b'l', b'o', b'u'] {
            assert!(!BACKUP_ALPHABET.contains(&ambiguous));
        }
        let unique: HashSet<&u8> = BACKUP_ALPHABET.iter().collect();
        assert_eq!(unique.len(), 32);
        // 8 symbols x log2(32) = 40 bits.
        assert_eq!(8 * BACKUP_ALPHABET.len().trailing_zeros(), 40);
    }

    #[test]
    fn normalize_backup_code_accepts_what_people_type() {
        assert_eq!(normalize_backup_code("ab12-cd34").as_deref(), Some("ab12-cd34"));
        assert_eq!(normalize_backup_code("AB12CD34").as_deref(), Some("ab12-cd34"));
        assert_eq!(normalize_backup_code(" ab12 cd34 ").as_deref(), Some("ab12-cd34"));
        assert_eq!(normalize_backup_code("oIL0-aaaa").as_deref(), Some("0110-aaaa"));
        for bad in ["", "ab12-cd3", "ab12-cd345", "ab12-cd3u", "ab12_cd34", "ab12-cd3é"] {
            assert_eq!(normalize_backup_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(
            crate::hex_lower(&sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            crate::hex_lower(&sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"samE"));
        assert!(!constant_time_eq(b"same", b"same!"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
