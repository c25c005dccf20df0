//! How code in each supported language becomes a fresh process.
//!
//! Background code runs in a new process, never in a shared interpreter: a job that loops
//! forever or crashes must not take the sandbox's interactive state with it, and killing it must
//! kill only it.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::json;

use crate::api::ApiError;

/// The languages of `spec` §8.1, by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `python`, `python3`.
    Python,
    /// `javascript`, `js`, `node`, `nodejs`.
    JavaScript,
    /// `bash`, `sh`, `shell`.
    Bash,
    /// `go`.
    Go,
}

impl Language {
    /// Parses a request's `language` (case-insensitive; empty means Python, the SDK default).
    pub fn parse(name: &str) -> Result<Self, LangError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "python" | "python3" | "py" => Ok(Self::Python),
            "javascript" | "js" | "node" | "nodejs" => Ok(Self::JavaScript),
            "bash" | "sh" | "shell" => Ok(Self::Bash),
            "go" | "golang" => Ok(Self::Go),
            _ => Err(LangError::Unsupported(name.to_string())),
        }
    }

    /// The canonical name reported back to clients.
    pub fn name(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::JavaScript => "javascript",
            Self::Bash => "bash",
            Self::Go => "go",
        }
    }

    /// The program that must be installed for this language.
    pub fn runtime(self) -> &'static str {
        match self {
            Self::Python => "python3",
            Self::JavaScript => "node",
            Self::Bash => "bash",
            Self::Go => "go",
        }
    }
}

/// Code turned into an argv.
#[derive(Debug)]
pub struct Program {
    /// What to execute.
    pub argv: Vec<String>,
    /// A scratch directory holding the source, to delete once the process ended.
    pub scratch: Option<PathBuf>,
}

impl Program {
    /// Deletes the scratch directory, if any.
    pub fn cleanup(scratch: Option<&Path>) {
        if let Some(dir) = scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Why code cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum LangError {
    /// Not one of the supported languages.
    #[error("unsupported language '{0}' (supported: python, javascript, bash, go)")]
    Unsupported(String),
    /// The language's toolchain is not in the sandbox.
    #[error(
        "language '{language}' needs `{program}`, which is not installed in this sandbox \
         (not found in PATH)"
    )]
    MissingRuntime {
        /// The canonical language name.
        language: &'static str,
        /// The missing program.
        program: &'static str,
    },
    /// Writing the source file failed.
    #[error("cannot write the source file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<LangError> for ApiError {
    fn from(e: LangError) -> Self {
        let details = match &e {
            LangError::MissingRuntime { language, program } => {
                json!({"language": language, "missing": program})
            }
            LangError::Unsupported(l) => json!({"language": l}),
            LangError::Io(_) => json!({}),
        };
        let status = match e {
            LangError::Io(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "INVALID_REQUEST", e.to_string()).with_details(details)
    }
}

/// Builds the argv running `code` in `language`, checking that the toolchain exists in the
/// `PATH` of `env` first so a missing one is a clear 400 instead of a spawn error.
pub fn program(
    language: Language,
    code: &str,
    env: &[(String, String)],
) -> Result<Program, LangError> {
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    if find_in_path(language.runtime(), path).is_none() {
        return Err(LangError::MissingRuntime {
            language: language.name(),
            program: language.runtime(),
        });
    }
    let code = code.to_string();
    let argv = match language {
        Language::Python => vec!["python3".into(), "-u".into(), "-c".into(), code],
        Language::JavaScript => vec!["node".into(), "-e".into(), code],
        Language::Bash => vec!["bash".into(), "-c".into(), code],
        Language::Go => {
            // `go run` wants a file; a private directory per job keeps jobs apart. The sandbox's
            // /tmp, not the agent's inherited TMPDIR, which may name a host path.
            let dir = Path::new("/tmp").join(format!("hutch-go-{}", random_hex(8)));
            std::fs::create_dir_all(&dir)?;
            let file = dir.join("main.go");
            if let Err(e) = std::fs::write(&file, code) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
            return Ok(Program {
                argv: vec![
                    "go".into(),
                    "run".into(),
                    file.to_string_lossy().into_owned(),
                ],
                scratch: Some(dir),
            });
        }
    };
    Ok(Program {
        argv,
        scratch: None,
    })
}

/// The first executable file named `name` in a `PATH` value.
pub fn find_in_path(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// `n` random bytes as hex, for ids and scratch names.
pub fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases() {
        assert_eq!(Language::parse("Python3").unwrap(), Language::Python);
        assert_eq!(Language::parse("").unwrap(), Language::Python);
        assert_eq!(Language::parse("nodejs").unwrap(), Language::JavaScript);
        assert_eq!(Language::parse("sh").unwrap(), Language::Bash);
        assert_eq!(Language::parse("go").unwrap(), Language::Go);
        assert!(matches!(
            Language::parse("cobol"),
            Err(LangError::Unsupported(_))
        ));
    }

    #[test]
    fn missing_runtime_is_named() {
        let env = vec![("PATH".to_string(), "/nonexistent".to_string())];
        let err = program(Language::Go, "package main", &env).unwrap_err();
        assert!(err.to_string().contains("`go`"), "{err}");
        let api: ApiError = err.into();
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn finds_sh() {
        assert!(find_in_path("sh", "/nonexistent:/bin:/usr/bin").is_some());
        assert!(find_in_path("no-such-program-xyz", "/bin:/usr/bin").is_none());
    }
}
