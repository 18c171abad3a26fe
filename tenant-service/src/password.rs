//! Passwords: the policy a new password must meet, and argon2id hashing.
//!
//! Owns the PHC strings in the `users` table. Must never log, return or keep a password;
//! hashing is slow on purpose, so callers run it off the async executor.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted, in characters.
pub const MIN_CHARS: usize = 12;
/// Longest password accepted, in bytes: hashing cost must not be the caller's choice.
pub const MAX_BYTES: usize = 1024;

/// Why a new password is refused; the message is shown to the person choosing it.
pub fn check_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_CHARS {
        return Err(format!(
            "the password must be at least {MIN_CHARS} characters long"
        ));
    }
    if password.len() > MAX_BYTES {
        return Err(format!(
            "the password must be at most {MAX_BYTES} bytes long"
        ));
    }
    Ok(())
}

/// An argon2id PHC string of `password` with a fresh random salt (the crate's default
/// parameters, which follow OWASP's recommendation).
pub fn hash(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// True when `password` matches the PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_characters_and_caps_bytes() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("exactly12chr").is_ok());
        assert!(
            check_policy("ééééééééééé").is_err(),
            "11 characters, 22 bytes"
        );
        assert!(check_policy(&"x".repeat(MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let one = hash("correct horse battery").unwrap();
        assert!(one.starts_with("$argon2id$"));
        assert!(!one.contains("correct horse"));
        assert!(verify("correct horse battery", &one));
        assert!(!verify("correct horse battery!", &one));
        assert_ne!(one, hash("correct horse battery").unwrap());
        assert!(!verify("anything", "not a phc string"));
    }
}
