//! Reading OpenSSH `known_hosts` files into the fingerprints a [`super::HostKeyPolicy`]
//! accepts, so operators can reuse the trust they already have.
//!
//! Supported: plain host patterns (`host`, `host1,host2`, `[host]:port`), one key per
//! line, `#` comments. Hashed entries (`|1|…`), wildcards and `@cert-authority` /
//! `@revoked` markers are skipped (and counted, so the caller can say so).

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::host_key::fingerprint_from_digest;

/// Fingerprints of the keys recorded for `host` on `port`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHostKeys {
    /// `SHA256:…` fingerprints of matching entries.
    pub fingerprints: Vec<String>,
    /// Lines that could not be considered (hashed hosts, markers, wildcards, bad keys).
    pub skipped: usize,
}

/// Parses `text` (a `known_hosts` file) for the entries of `host:port`.
pub fn keys_for(text: &str, host: &str, port: u16) -> KnownHostKeys {
    let wanted = if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") };
    let mut found = KnownHostKeys::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(_key_type), Some(blob)) = (fields.next(), fields.next(), fields.next()) else {
            found.skipped += 1;
            continue;
        };
        if hosts.starts_with('@') || hosts.starts_with('|') || hosts.contains(['*', '?', '!']) {
            found.skipped += 1;
            continue;
        }
        if !hosts.split(',').any(|h| h == wanted) {
            continue;
        }
        match base64::engine::general_purpose::STANDARD.decode(blob) {
            Ok(key) => found.fingerprints.push(fingerprint_from_digest(&Sha256::digest(&key))),
            Err(_) => found.skipped += 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -lf` of this key prints the fingerprint asserted below.
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIK5ZU6iMLhlbAaqykl9lGFIq7dhzSoQVJ3PH3FUDOEhV";

    #[test]
    fn entries_match_by_host_and_port() {
        let text = format!(
            "# comment\nweb1,10.0.0.5 ssh-ed25519 {KEY}\n[web1]:2222 ssh-ed25519 {KEY}\n|1|abc=|def= ssh-ed25519 {KEY}\n\
             @cert-authority *.example ssh-ed25519 {KEY}\nother ssh-ed25519 {KEY}\n"
        );
        let web1 = keys_for(&text, "web1", 22);
        assert_eq!(web1.fingerprints.len(), 1);
        assert_eq!(web1.fingerprints[0], "SHA256:7haWgmULVGSUQPxjIGvgJLFEBHkkIV9aY0y7UJ/wlZs");
        assert_eq!(web1.skipped, 2);
        assert_eq!(keys_for(&text, "web1", 2222).fingerprints.len(), 1);
        assert_eq!(keys_for(&text, "10.0.0.5", 22).fingerprints, web1.fingerprints);
        assert!(keys_for(&text, "web2", 22).fingerprints.is_empty());
    }
}
