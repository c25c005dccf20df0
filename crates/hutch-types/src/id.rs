//! Identifiers that end up in file paths, cgroup names and URLs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// What kind of identifier.
        kind: &'static str,
    },
    /// The string was longer than allowed.
    #[error("{kind} is longer than {max} characters")]
    TooLong {
        /// What kind of identifier.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
    /// The string held a character outside the allowed set.
    #[error("{kind} may only contain {allowed}; got {value:?}")]
    BadChar {
        /// What kind of identifier.
        kind: &'static str,
        /// The allowed set, for the message.
        allowed: &'static str,
        /// The refused value.
        value: String,
    },
}

/// A sandbox id: 1–64 characters of `[a-z0-9-]`, starting with a letter or digit.
///
/// It names the sandbox's directory, its cgroups and its network slot, so nothing that could
/// climb out of a directory (`/`, `..`) can ever be one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    const MAX: usize = 64;

    /// Checks and wraps a sandbox id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check(
            value,
            "sandbox id",
            Self::MAX,
            &['-'],
            "lower-case letters, digits and '-'",
        )
        .map(Self)
    }

    /// A fresh random id of 20 lower-case alphanumerics, the length E2B users are used to.
    pub fn generate(random: impl FnMut() -> u64) -> Self {
        Self(random_string(20, random))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rule shared by every identifier: 1..=`max` characters, lower-case letters and digits plus
/// `extra`, starting with a letter or digit (so no `.`, `..` or `-x` option-like names).
fn check(
    value: &str,
    kind: &'static str,
    max: usize,
    extra: &[char],
    allowed: &'static str,
) -> Result<String, IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_first = value.chars().next().is_some_and(plain);
    let ok_rest = value.chars().all(|c| plain(c) || extra.contains(&c));
    if !ok_first || !ok_rest {
        return Err(IdError::BadChar {
            kind,
            allowed,
            value: value.to_string(),
        });
    }
    Ok(value.to_string())
}

/// A session id: 1–128 characters of `[A-Za-z0-9_-]` (`docs/sessions-api.md`).
///
/// Chosen by clients (the seed's `session_id="analysis"`), so upper case and `_` are allowed;
/// it names a file inside the sandbox, so nothing else is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    const MAX: usize = 128;

    /// Checks and wraps a session id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const KIND: &str = "session id";
        if value.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if value.len() > Self::MAX {
            return Err(IdError::TooLong {
                kind: KIND,
                max: Self::MAX,
            });
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(IdError::BadChar {
                kind: KIND,
                allowed: "letters, digits, '_' and '-'",
                value: value.to_string(),
            });
        }
        Ok(Self(value.to_string()))
    }

    /// A fresh random id (`sess_` and 16 lower-case alphanumerics).
    pub fn generate(random: impl FnMut() -> u64) -> Self {
        Self(format!("sess_{}", random_string(16, random)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `len` characters from `[a-z0-9]`, drawn from `random`.
pub(crate) fn random_string(len: usize, mut random: impl FnMut() -> u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let i = (random() % ALPHABET.len() as u64) as usize;
            char::from(ALPHABET[i])
        })
        .collect()
}

impl TryFrom<String> for SandboxId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> Self {
        id.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A template name (slug): 1–63 characters of `[a-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TemplateName(String);

impl TemplateName {
    const MAX: usize = 63;

    /// Checks and wraps a template name.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check(
            value,
            "template name",
            Self::MAX,
            &['-', '_', '.'],
            "lower-case letters, digits, '.', '_' and '-'",
        )
        .map(Self)
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TemplateName {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TemplateName> for String {
    fn from(name: TemplateName) -> Self {
        name.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_refuse_path_tricks() {
        for bad in ["", "..", "a/b", "A", "-a", "a b", "a.b", &"x".repeat(65)] {
            assert!(SandboxId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["a", "0abc", "sb-1", &"x".repeat(64)] {
            assert!(SandboxId::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn generated_ids_are_valid() {
        let mut n = 7u64;
        let id = SandboxId::generate(|| {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
            n >> 33
        });
        assert_eq!(id.as_str().len(), 20);
        assert!(SandboxId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn template_names() {
        assert!(TemplateName::parse("code-interpreter").is_ok());
        assert!(TemplateName::parse("python3.11").is_ok());
        assert!(TemplateName::parse("../etc").is_err());
        assert!(TemplateName::parse("Nope").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: SandboxId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(ok.as_str(), "abc");
        assert!(serde_json::from_str::<SandboxId>("\"../x\"").is_err());
    }
}
