//! Time-based one-time passwords (RFC 6238) for the second login factor.
//!
//! The parameters are the ones every authenticator app supports: HMAC-SHA1,
//! 6 digits, 30-second steps. [`TotpSecret::verify`] accepts the current step and
//! one step either side (clock skew), compares in constant time and refuses any
//! step at or before the last one used, so an observed code cannot be replayed:
//! the caller stores the returned step with the user and passes it back next time.
//!
//! Secrets are shared with apps as RFC 4648 base32 without padding, inside an
//! `otpauth://` provisioning URI (usually shown as a QR code).

use std::fmt;

use aws_lc_rs::hmac;
use secrecy::SecretString;
use secrecy::zeroize::Zeroizing;

use crate::{CryptoError, fill_random};

/// Digits in a code.
pub const DIGITS: u8 = 6;
/// Length of a time step in seconds.
pub const STEP_SECS: u64 = 30;
/// Length of a generated secret in bytes (160 bits, the RFC 4226 recommendation).
pub const SECRET_LEN: usize = 20;
/// Shortest secret accepted from outside (128 bits, the RFC 4226 minimum).
const MIN_SECRET_LEN: usize = 16;
/// Steps accepted on either side of the current one.
const SKEW_STEPS: i64 = 1;

/// A TOTP shared secret. `Debug` redacts it; the bytes are wiped on drop.
#[derive(Clone)]
pub struct TotpSecret {
    bytes: Zeroizing<Vec<u8>>,
}

impl TotpSecret {
    /// Generates a fresh random 20-byte secret.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        fill_random(&mut bytes)?;
        Ok(Self { bytes })
    }

    /// Wraps raw secret bytes (e.g. just decrypted from storage); at least 16 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(CryptoError::InvalidTotpSecret("shorter than 128 bits"));
        }
        Ok(Self { bytes: Zeroizing::new(bytes.to_vec()) })
    }

    /// Parses base32 (RFC 4648 alphabet, either case; spaces, dashes and `=` padding
    /// are ignored so that secrets typed in groups are accepted).
    pub fn from_base32(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = base32_decode(encoded).ok_or(CryptoError::InvalidTotpSecret("not valid base32"))?;
        Self::from_bytes(&bytes)
    }

    /// The raw secret bytes, e.g. to seal them for storage.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The secret as unpadded upper-case base32, for manual entry in an app.
    pub fn to_base32(&self) -> SecretString {
        SecretString::from(base32_encode(&self.bytes))
    }

    /// The `otpauth://totp/...` URI authenticator apps import (as a QR code). It
    /// contains the secret, so it is returned as a [`SecretString`].
    pub fn provisioning_uri(&self, issuer: &str, account: &str) -> SecretString {
        let issuer = percent_encode(issuer);
        let account = percent_encode(account);
        let secret = Zeroizing::new(base32_encode(&self.bytes));
        SecretString::from(format!(
            "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            secret.as_str()
        ))
    }

    /// RFC 4226 HOTP value for `counter`: the dynamically truncated HMAC-SHA1
    /// modulo 10^`digits`, left-padded with zeros to `digits` characters.
    pub fn hotp(&self, counter: u64, digits: u8) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.bytes);
        let tag = hmac::sign(&key, &counter.to_be_bytes());
        let mac = tag.as_ref();
        // A SHA-1 tag is 20 bytes, so offset + 3 <= 15 + 3 is always in range.
        let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
        let value = match mac.get(offset..offset + 4) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a & 0x7f, b, c, d]),
            _ => 0,
        };
        // value < 2^31, so for 10 or more digits the modulus changes nothing.
        let code = match 10u64.checked_pow(u32::from(digits)) {
            Some(modulus) => u64::from(value) % modulus,
            None => u64::from(value),
        };
        format!("{code:0width$}", width = usize::from(digits))
    }

    /// The 6-digit code for the step containing `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.hotp(unix_secs / STEP_SECS, DIGITS)
    }

    /// Checks a code typed by the user at `now_unix`.
    ///
    /// Accepts exactly 6 ASCII digits matching the current step or one step either
    /// side, and only for steps after `last_used_step`. Returns the matched step,
    /// which the caller must store as the new `last_used_step`; `None` means reject.
    pub fn verify(&self, code: &str, now_unix: u64, last_used_step: Option<i64>) -> Option<i64> {
        if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = i64::try_from(now_unix / STEP_SECS).ok()?;
        let mut matched = None;
        // Compute every candidate so the time taken does not depend on which one matched.
        for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
            let Ok(counter) = u64::try_from(step) else { continue };
            let expected = self.hotp(counter, DIGITS);
            let equal = crate::tokens::constant_time_eq(expected.as_bytes(), code.as_bytes());
            let fresh = last_used_step.is_none_or(|last| step > last);
            if equal && fresh {
                matched = Some(step);
            }
        }
        matched
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([REDACTED])")
    }
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, upper case, no padding.
fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32_ALPHABET[usize::from((buffer >> bits) & 0x1f)]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)]));
    }
    out
}

/// Decodes RFC 4648 base32 in either case, skipping spaces, dashes and `=`.
/// Returns `None` for any other character or an impossible length.
fn base32_decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    let mut symbols = 0usize;
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b' ' | b'-' | b'=' => continue,
            _ => return None,
        };
        symbols += 1;
        buffer = (buffer << 5) | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    // 1, 3 and 6 trailing symbols cannot come from whole bytes.
    if matches!(symbols % 8, 1 | 3 | 6) {
        return None;
    }
    Some(out)
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&crate::hex_lower(&[b]).to_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// The RFC 6238 appendix B SHA-1 secret (ASCII "12345678901234567890").
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890").unwrap()
    }

    /// RFC 6238 appendix B, SHA-1 rows: (time, 8-digit TOTP).
    const RFC6238_SHA1: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_sha1_vectors_8_digits() {
        let secret = rfc_secret();
        for (time, expected) in RFC6238_SHA1 {
            assert_eq!(secret.hotp(time / STEP_SECS, 8), expected, "t={time}");
        }
    }

    #[test]
    fn rfc6238_sha1_vectors_6_digits_are_the_last_six() {
        let secret = rfc_secret();
        for (time, expected) in RFC6238_SHA1 {
            assert_eq!(secret.code_at(time), expected[2..], "t={time}");
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        // RFC 4226 appendix D: same secret, counters 0..9, 6 digits.
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
            "520489",
        ];
        let secret = rfc_secret();
        for (counter, code) in (0u64..).zip(expected) {
            assert_eq!(secret.hotp(counter, 6), code, "counter {counter}");
        }
    }

    #[test]
    fn hotp_handles_extreme_digit_counts() {
        let secret = rfc_secret();
        // 10 or more digits: the 31-bit value itself, zero-padded.
        let ten = secret.hotp(0, 10);
        assert_eq!(ten.len(), 10);
        assert!(ten.ends_with("755224"), "{ten}");
        assert_eq!(secret.hotp(0, 25).len(), 25);
        assert_eq!(secret.hotp(0, 0), "0");
    }

    #[test]
    fn verify_accepts_one_step_of_skew_and_returns_the_step() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = i64::try_from(now / STEP_SECS).unwrap();
        assert_eq!(secret.verify(&secret.code_at(now), now, None), Some(step));
        assert_eq!(secret.verify(&secret.code_at(now - 30), now, None), Some(step - 1));
        assert_eq!(secret.verify(&secret.code_at(now + 30), now, None), Some(step + 1));
        assert_eq!(secret.verify(&secret.code_at(now - 60), now, None), None);
        assert_eq!(secret.verify(&secret.code_at(now + 60), now, None), None);
    }

    #[test]
    fn verify_refuses_replayed_and_older_steps() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let code = secret.code_at(now);
        let step = secret.verify(&code, now, None).unwrap();
        assert_eq!(secret.verify(&code, now, Some(step)), None, "replay");
        assert_eq!(secret.verify(&code, now + 10, Some(step)), None, "replay later in the same window");
        // After the previous step was used, the current one is still fine.
        assert_eq!(secret.verify(&code, now, Some(step - 1)), Some(step));
        // A code of an older step is refused once a newer step has been used.
        assert_eq!(secret.verify(&secret.code_at(now - 30), now, Some(step)), None);
    }

    #[test]
    fn verify_rejects_malformed_codes() {
        let secret = rfc_secret();
        let now = 59;
        let good = secret.code_at(now);
        assert_eq!(good, "287082");
        for bad in ["", "28708", "2870820", " 287082", "287 082", "28708a", "２８７０８２", "-28708"] {
            assert_eq!(secret.verify(bad, now, None), None, "{bad:?}");
        }
        assert_eq!(secret.verify("287083", now, None), None);
    }

    #[test]
    fn verify_near_the_epoch_skips_negative_steps() {
        let secret = rfc_secret();
        assert_eq!(secret.verify(&secret.code_at(0), 0, None), Some(0));
        assert_eq!(secret.verify(&secret.code_at(0), 0, Some(-5)), Some(0));
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap().as_slice(), plain.as_bytes());
            assert_eq!(base32_decode(&encoded.to_lowercase()).unwrap().as_slice(), plain.as_bytes());
        }
        assert_eq!(base32_decode("MZXW6YQ=").unwrap().as_slice(), b"foob");
        assert_eq!(base32_decode("mzxw 6ytb-oi").unwrap().as_slice(), b"foobar");
        for bad in ["M", "MZX", "MZXW6Y", "MZXW6!", "MZ1Q", "MZ8Q"] {
            assert!(base32_decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn generated_secret_round_trips_through_base32() {
        let secret = TotpSecret::generate().unwrap();
        assert_eq!(secret.expose_bytes().len(), SECRET_LEN);
        let encoded = secret.to_base32();
        assert_eq!(encoded.expose_secret().len(), 32);
        let back = TotpSecret::from_base32(encoded.expose_secret()).unwrap();
        assert_eq!(back.expose_bytes(), secret.expose_bytes());
        assert_ne!(TotpSecret::generate().unwrap().expose_bytes(), secret.expose_bytes());
    }

    #[test]
    fn short_or_invalid_secrets_are_rejected() {
        assert!(matches!(TotpSecret::from_bytes(&[1u8; 15]), Err(CryptoError::InvalidTotpSecret(_))));
        assert!(matches!(TotpSecret::from_base32("MZXW6YTB"), Err(CryptoError::InvalidTotpSecret(_))));
        assert!(matches!(
            TotpSecret::from_base32("not base32 at all!"),
            Err(CryptoError::InvalidTotpSecret(_))
        ));
    }

    #[test]
    fn provisioning_uri_is_percent_encoded() {
        let secret = rfc_secret();
        let uri = secret.provisioning_uri("Open Watch", "alice@example.com");
        assert_eq!(
            uri.expose_secret(),
            "otpauth://totp/Open%20Watch:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Open%20Watch&algorithm=SHA1&digits=6&period=30"
        );
        let tricky = secret.provisioning_uri("a:b&c", "é?");
        assert!(
            tricky.expose_secret().starts_with("otpauth://totp/a%3Ab%26c:%C3%A9%3F?"),
            "{}",
            tricky.expose_secret()
        );
    }

    #[test]
    fn debug_redacts_the_secret() {
        let secret = rfc_secret();
        let debug = format!("{secret:?}");
        assert_eq!(debug, "TotpSecret([REDACTED])");
    }
}
