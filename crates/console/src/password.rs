//! Passwords: Argon2id (RFC 9106) in the PHC string format, with the argon2 crate's
//! defaults (19 MiB, 2 passes, 1 lane: OWASP's minimum for Argon2id).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// NIST SP 800-63B asks at least 8; a console that runs a health network asks 12.
pub const MIN_LEN: usize = 12;
/// Long enough for any pass phrase, short enough that hashing it costs nothing extra.
pub const MAX_LEN: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Weak {
    TooShort,
    TooLong,
}

/// Length in characters, not bytes: a Japanese pass phrase counts what it shows.
pub fn check_strength(pw: &str) -> Result<(), Weak> {
    let n = pw.chars().count();
    if n < MIN_LEN {
        Err(Weak::TooShort)
    } else if n > MAX_LEN {
        Err(Weak::TooLong)
    } else {
        Ok(())
    }
}

pub fn hash(pw: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `pw` matches `phc` (the crate compares in constant time).
pub fn verify(pw: &str, phc: &str) -> bool {
    if pw.len() > MAX_LEN * 4 {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows, verified when the user does not exist, so a login
/// for an unknown name takes as long as one for a known name.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash("dummy password that no account has").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_and_wrong_password() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn strength_counts_characters() {
        assert_eq!(check_strength("short"), Err(Weak::TooShort));
        assert_eq!(check_strength("医療情報システム安全管理"), Ok(()));
        assert_eq!(check_strength(&"a".repeat(257)), Err(Weak::TooLong));
    }
}
