//! Password hashing (Argon2id) and the password policy.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) with the
//! OWASP-recommended minimum parameters: 19 MiB of memory, 2 passes, 1 lane. The
//! parameters travel inside each hash, so raising them later keeps old hashes
//! verifiable.
//!
//! Login must take the same time whether or not the user exists: when there is no
//! user (or no password hash), call [`verify_dummy`], which does the same work
//! against a fixed hash.
//!
//! [`PasswordPolicy`] checks a new password (length in characters, not the user
//! name, not a well-known password) and reports the first violation with a stable
//! code for API responses.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::{CryptoError, fill_random};

/// Argon2 memory cost in KiB (OWASP: 19 MiB).
pub const MEMORY_KIB: u32 = 19_456;
/// Argon2 number of passes.
pub const ITERATIONS: u32 = 2;
/// Argon2 degree of parallelism.
pub const PARALLELISM: u32 = 1;
/// Salt length in bytes.
const SALT_LEN: usize = 16;
/// Hash output length in bytes.
const OUTPUT_LEN: usize = 32;

/// A well-formed hash with the parameters above whose salt and output are random
/// bytes, so no known password matches it; [`verify_dummy`] checks against it so
/// unknown users cost as much as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$pHR0TzqJnXzbfL4u3P0+Sg$DPxxB/Z8A5GYOTi8U7gqyXfrpSUpBykS1XPhrwFKp0M";

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with Argon2id and a fresh random salt; returns the PHC string to store.
pub fn hash_password(password: &SecretString) -> Result<String, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    let hash = hasher()?
        .hash_password_with_salt(password.expose_secret().as_bytes(), &salt)
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(hash.to_string())
}

/// Checks `password` against a stored PHC string, using the parameters recorded in it.
///
/// Returns `false` for a wrong password and for a malformed hash (after doing the
/// same amount of work, so the two cannot be told apart by timing).
pub fn verify_password(password: &SecretString, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password.expose_secret().as_bytes(), &hash).is_ok(),
        Err(_) => {
            verify_dummy(password);
            false
        }
    }
}

/// Spends the time of one verification against a fixed hash and discards the
/// result: call it when the user is unknown so that response times do not reveal
/// which user names exist.
pub fn verify_dummy(password: &SecretString) {
    if let Ok(hash) = PasswordHash::new(DUMMY_HASH) {
        // The outcome is irrelevant; only the work matters.
        let _ = Argon2::default().verify_password(password.expose_secret().as_bytes(), &hash);
    }
}

/// Rules for new passwords (NIST SP 800-63B style: length and a block list, no
/// composition rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (Unicode scalar values).
    pub min_chars: usize,
    /// Maximum length in characters; bounds the work a login can cause.
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_chars: 12, max_chars: 1024 }
    }
}

impl PasswordPolicy {
    /// Returns the first rule `password` breaks for the account `username`.
    ///
    /// The password may not equal the user name (ignoring case) and may not contain
    /// it when the user name has at least 4 characters; it may not be one of the
    /// embedded well-known passwords (ignoring case and surrounding whitespace).
    pub fn check(&self, password: &SecretString, username: &str) -> Result<(), PolicyViolation> {
        let password = password.expose_secret();
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(PolicyViolation::TooShort { min_chars: self.min_chars });
        }
        if chars > self.max_chars {
            return Err(PolicyViolation::TooLong { max_chars: self.max_chars });
        }
        let lowered = password.to_lowercase();
        let user = username.trim().to_lowercase();
        if !user.is_empty() && (lowered == user || (user.chars().count() >= 4 && lowered.contains(&user))) {
            return Err(PolicyViolation::ContainsUsername);
        }
        let candidate = lowered.trim();
        if COMMON_PASSWORDS.contains(&candidate) {
            return Err(PolicyViolation::TooCommon);
        }
        Ok(())
    }
}

/// Why a new password was refused. [`PolicyViolation::code`] is stable for API clients;
/// `Display` gives a message for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyViolation {
    /// Fewer characters than the policy minimum.
    TooShort {
        /// The minimum, for the message.
        min_chars: usize,
    },
    /// More characters than the policy maximum.
    TooLong {
        /// The maximum, for the message.
        max_chars: usize,
    },
    /// The password is or contains the user name.
    ContainsUsername,
    /// The password is on the list of well-known passwords.
    TooCommon,
}

impl PolicyViolation {
    /// Stable snake_case code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "password_too_short",
            Self::TooLong { .. } => "password_too_long",
            Self::ContainsUsername => "password_contains_username",
            Self::TooCommon => "password_too_common",
        }
    }
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min_chars } => {
                write!(f, "the password must have at least {min_chars} characters")
            }
            Self::TooLong { max_chars } => write!(f, "the password must have at most {max_chars} characters"),
            Self::ContainsUsername => f.write_str("the password must not contain the user name"),
            Self::TooCommon => f.write_str("the password is too common; choose a less predictable one"),
        }
    }
}

impl std::error::Error for PolicyViolation {}

/// Well-known passwords (lower case), drawn from public breach top lists plus the
/// obvious defaults of this kind of product. Short entries matter when an operator
/// lowers `min_chars`.
const COMMON_PASSWORDS: &[&str] = &[
    "123456",
    "12345678",
    "123456789",
    "1234567890",
    "12345678901",
    "123456789012",
    "1234567890123",
    "12345678910",
    "111111111111",
    "000000000000",
    "123123123123",
    "121212121212",
    "987654321098",
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "password12345",
    "password123456",
    "password!",
    "password123!",
    "passw0rd",
    "passw0rd1234",
    "p@ssw0rd",
    "p@ssw0rd1234",
    "p@ssword1234",
    "passwordpassword",
    "mypassword123",
    "newpassword123",
    "admin",
    "admin123",
    "admin1234",
    "admin12345",
    "admin123456",
    "admin1234567",
    "admin@123",
    "adminadmin",
    "adminadmin123",
    "administrator",
    "administrator1",
    "administrator123",
    "root",
    "rootroot",
    "root12345678",
    "toor",
    "changeme",
    "changeme123",
    "changeme1234",
    "changemechangeme",
    "changeit",
    "changeitchangeit",
    "default",
    "default12345",
    "welcome",
    "welcome123",
    "welcome12345",
    "welcome123456",
    "welcometowork",
    "letmein",
    "letmein12345",
    "letmeinletmein",
    "iloveyou",
    "iloveyou1234",
    "iloveyouiloveyou",
    "qwerty",
    "qwerty123",
    "qwerty123456",
    "qwertyuiop",
    "qwertyuiop12",
    "qwertyuiopas",
    "qwertyuiopasdf",
    "qwertyuiopasdfgh",
    "qwertyqwerty",
    "asdfghjkl",
    "asdfghjkl123",
    "asdfasdfasdf",
    "zxcvbnm",
    "zxcvbnm12345",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "1qaz2wsx3edc4rfv",
    "q1w2e3r4t5y6",
    "abc123",
    "abcdefghijkl",
    "abcd12345678",
    "abc123456789",
    "monkey123456",
    "dragon123456",
    "sunshine1234",
    "football1234",
    "baseball1234",
    "superman1234",
    "princess1234",
    "trustno1trustno1",
    "secret",
    "secret123456",
    "secretpassword",
    "openwatch",
    "openwatch123",
    "openwatch1234",
    "openwatchadmin",
    "compliance123",
    "security1234",
    "test",
    "test12345678",
    "testtesttest",
    "testpassword",
    "guest",
    "guest1234567",
    "user12345678",
    "letmein!letmein",
    "correcthorsebatterystaple",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn hash_then_verify() {
        let password = secret("correct horse battery");
        let phc = hash_password(&password).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&password, &phc));
        assert!(!verify_password(&secret("correct horse batterY"), &phc));
        assert!(!verify_password(&secret(""), &phc));
    }

    #[test]
    fn same_password_hashes_differently() {
        let password = secret("correct horse battery");
        let a = hash_password(&password).unwrap();
        let b = hash_password(&password).unwrap();
        assert_ne!(a, b);
        assert!(verify_password(&password, &a) && verify_password(&password, &b));
    }

    #[test]
    fn malformed_hash_does_not_verify() {
        let password = secret("correct horse battery");
        for phc in ["", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$", "$2b$12$abcdefghijklmnopqrstuv"] {
            assert!(!verify_password(&password, phc), "{phc}");
        }
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        // Raising parameters later must keep old hashes usable: the verifier reads them from the hash.
        let password = secret("correct horse battery");
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap())
            .hash_password_with_salt(b"correct horse battery", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(weak.contains("m=1024,t=1,p=1"), "{weak}");
        assert!(verify_password(&password, &weak));
        assert!(!verify_password(&secret("wrong"), &weak));
    }

    #[test]
    fn dummy_hash_uses_the_current_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let current = hash_password(&secret("anything at all")).unwrap();
        let current = PasswordHash::new(&current).unwrap();
        assert_eq!(dummy.algorithm, current.algorithm);
        assert_eq!(dummy.version, current.version);
        assert_eq!(dummy.params, current.params);
        assert_eq!(dummy.hash.map(|h| h.len()), current.hash.map(|h| h.len()));
        // Nobody can log in with the dummy hash using a guessable value.
        for guess in ["", "password", "dummy", "admin123"] {
            assert!(!verify_password(&secret(guess), DUMMY_HASH));
        }
        verify_dummy(&secret("anything at all"));
    }

    #[test]
    fn policy_accepts_a_good_password() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.check(&secret("tulip-orbit-cactus-91"), "alice"), Ok(()));
        // 12 characters exactly, non-ASCII counted as characters.
        assert_eq!(policy.check(&secret("ünïcødé-pässw"), "bob"), Ok(()));
    }

    #[test]
    fn policy_counts_characters_not_bytes() {
        let policy = PasswordPolicy::default();
        // 11 characters but 22 bytes.
        let short = "ééééééééééé";
        assert_eq!(short.len(), 22);
        assert_eq!(policy.check(&secret(short), "bob"), Err(PolicyViolation::TooShort { min_chars: 12 }));
        // 1024 characters of 2 bytes each is fine; 1025 is not.
        assert_eq!(policy.check(&secret(&"é".repeat(1024)), "bob"), Ok(()));
        assert_eq!(
            policy.check(&secret(&"é".repeat(1025)), "bob"),
            Err(PolicyViolation::TooLong { max_chars: 1024 })
        );
    }

    #[test]
    fn policy_rejects_the_username() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check(&secret("MaximilianXYZ"), "maximilianxyz"),
            Err(PolicyViolation::ContainsUsername)
        );
        assert_eq!(
            policy.check(&secret("my-name-is-ALICE-ok"), "alice"),
            Err(PolicyViolation::ContainsUsername)
        );
        // Short user names are only refused as the whole password.
        assert_eq!(policy.check(&secret("bob-likes-tulips"), "bob"), Ok(()));
        assert_eq!(policy.check(&secret("tulip-orbit-cactus"), ""), Ok(()));
    }

    #[test]
    fn policy_rejects_common_passwords_ignoring_case() {
        let policy = PasswordPolicy::default();
        for common in
            ["password123456", "123456789012", "QwertyUiopAS", "CHANGEMECHANGEME", " administrator "]
        {
            assert_eq!(
                policy.check(&secret(common), "someone"),
                Err(PolicyViolation::TooCommon),
                "{common:?}"
            );
        }
        // Only exact list entries are refused, not passwords that merely contain one.
        assert_eq!(policy.check(&secret("admin123-tulip-orbit"), "someone"), Ok(()));
        // Short list entries are caught by length first, by the list when the minimum is lowered.
        assert_eq!(
            policy.check(&secret("admin123"), "someone"),
            Err(PolicyViolation::TooShort { min_chars: 12 })
        );
        let lax = PasswordPolicy { min_chars: 8, ..PasswordPolicy::default() };
        assert_eq!(lax.check(&secret("Admin123"), "someone"), Err(PolicyViolation::TooCommon));
    }

    #[test]
    fn common_list_is_lowercase_and_about_a_hundred_entries() {
        assert!(COMMON_PASSWORDS.len() >= 100, "{}", COMMON_PASSWORDS.len());
        for entry in COMMON_PASSWORDS {
            assert_eq!(*entry, entry.to_lowercase(), "entries must be lower case");
        }
        let mut sorted = COMMON_PASSWORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), COMMON_PASSWORDS.len(), "duplicate entries");
    }

    #[test]
    fn violation_codes_and_messages() {
        let cases = [
            (PolicyViolation::TooShort { min_chars: 12 }, "password_too_short", "at least 12"),
            (PolicyViolation::TooLong { max_chars: 1024 }, "password_too_long", "at most 1024"),
            (PolicyViolation::ContainsUsername, "password_contains_username", "user name"),
            (PolicyViolation::TooCommon, "password_too_common", "too common"),
        ];
        for (violation, code, message) in cases {
            assert_eq!(violation.code(), code);
            assert!(violation.to_string().contains(message), "{violation}");
        }
    }
}
