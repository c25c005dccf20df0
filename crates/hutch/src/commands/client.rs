//! What every client verb shares: where the server is and which key to send (flags, then
//! environment, then the config file, then defaults), a small async runtime, and errors that
//! carry the server's own message.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hutch_client::{ApiError, ControlClient, ControlError, Sandbox, SandboxClient, SandboxError};
use serde::Deserialize;

use crate::cli::ClientOpts;

/// Where `hutch serve` listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7770";

/// Where a local `hutch serve` keeps the key it generated (its default data directory).
const LOCAL_KEY_FILE: &str = "/var/lib/hutch/api_key";

/// `config.toml`: the same two settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    api_key: Option<String>,
}

/// `$XDG_CONFIG_HOME/hutch/config.toml`, else `~/.config/hutch/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(x) = nonempty("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(x).join("hutch/config.toml"));
    }
    nonempty("HOME").map(|h| PathBuf::from(h).join(".config/hutch/config.toml"))
}

fn read_config(path: &Path) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Whether `url` names this machine (only then is the local server's key file a good guess).
fn is_local(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h,
        None => authority,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "0.0.0.0") || host.starts_with("127.")
}

/// The resolved connection of a client verb.
pub struct Ctx {
    /// The control plane.
    pub api: ControlClient,
    /// The server URL.
    pub url: String,
    /// `--json`.
    pub json: bool,
    /// Whether any API key was found.
    has_key: bool,
}

impl Ctx {
    /// Resolves flag > environment (both through clap) > config file > default.
    pub fn new(opts: &ClientOpts) -> Result<Self> {
        let file = if opts.url.is_some() && opts.api_key.is_some() {
            FileConfig::default()
        } else {
            match config_path() {
                Some(p) => read_config(&p)?,
                None => FileConfig::default(),
            }
        };
        let url = opts
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let url = url.trim_end_matches('/').to_string();
        let api_key = opts.api_key.clone().or(file.api_key).or_else(|| {
            is_local(&url)
                .then(|| std::fs::read_to_string(LOCAL_KEY_FILE).ok())
                .flatten()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        });
        if url.starts_with("https://") {
            anyhow::bail!(
                "{url}: hutch talks plain HTTP; put a TLS-terminating proxy's plain side in --url or use http://"
            );
        }
        let has_key = api_key.is_some();
        let api = ControlClient::new(&url, api_key)
            .with_context(|| format!("bad server URL {url:?}"))?
            .with_timeout(Duration::from_secs(120));
        Ok(Self {
            api,
            url,
            json: opts.json,
            has_key,
        })
    }

    /// Turns a failed call into the error the user sees: the server's message and code, plus a
    /// hint when the cause is probably the setup rather than the request.
    pub fn fail(&self, e: ApiError) -> anyhow::Error {
        let hint = match &e {
            ApiError::Server { status, .. } if status.as_u16() == 401 => Some(if self.has_key {
                "check the key: --api-key, HUTCH_API_KEY or `api_key` in the config file"
                    .to_string()
            } else {
                format!(
                    "no API key given: pass --api-key, set HUTCH_API_KEY, or put api_key in {}",
                    config_path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.config/hutch/config.toml".into())
                )
            }),
            ApiError::Transport(ControlError::Connect { .. }) => Some(format!(
                "is `hutch serve` running at {}? (set --url or HUTCH_URL)",
                self.url
            )),
            _ => None,
        };
        let msg = match &e {
            ApiError::Transport(_) => format!("{:#}", anyhow::Error::new(e)),
            _ => e.to_string(),
        };
        match hint {
            Some(h) => anyhow::anyhow!("{msg}\nhint: {h}"),
            None => anyhow::anyhow!("{msg}"),
        }
    }

    /// Like [`Ctx::fail`] for agent calls.
    pub fn fail_agent(&self, e: SandboxError) -> anyhow::Error {
        match e {
            SandboxError::Api(e) => self.fail(e),
            e => anyhow::Error::new(e),
        }
    }

    /// A client for the agent of sandbox `id` (its `public_host` and a fresh token).
    pub async fn agent(&self, id: &str) -> Result<SandboxClient> {
        let sandbox = self.api.get_sandbox(id).await.map_err(|e| self.fail(e))?;
        let token = self.api.refresh_token(id).await.map_err(|e| self.fail(e))?;
        self.agent_for(&sandbox, &token)
    }

    /// A client for `sandbox`'s agent with `token`. Its `public_host` is where its agent is
    /// reached; when it is missing or not plain HTTP the server URL is used (the gateway shares
    /// the port and routes by token).
    pub fn agent_for(&self, sandbox: &Sandbox, token: &str) -> Result<SandboxClient> {
        let host = sandbox
            .public_host
            .as_deref()
            .or(sandbox.direct_url.as_deref())
            .filter(|h| h.starts_with("http://"))
            .unwrap_or(&self.url);
        SandboxClient::new(host, token)
            .with_context(|| format!("bad agent URL {host:?} for sandbox {}", sandbox.id))
    }
}

/// Runs a client verb on a single-threaded runtime: the verbs wait on the network, one thing
/// at a time, and a multi-thread runtime would only add start-up cost.
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(f);
    // Threads blocked on standard input (shell) must not hold the exit up.
    rt.shutdown_background();
    Ok(out)
}

/// Ends the process with `code` after flushing what was printed; 0 returns normally.
pub fn exit_with(code: i32) -> Result<()> {
    if code != 0 {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// Resolves when the user asks to stop (Ctrl-C, SIGTERM, SIGHUP); the value is the exit
/// status a shell reports for that signal.
pub async fn interrupted() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    async fn on(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = on(SignalKind::interrupt()) => 130,
        _ = on(SignalKind::terminate()) => 143,
        _ = on(SignalKind::hangup()) => 129,
    }
}

/// The `--env` pairs as the API's map (none when empty, so server defaults stay).
pub fn env_map(pairs: &[(String, String)]) -> Option<std::collections::BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls() {
        assert!(is_local("http://127.0.0.1:7770"));
        assert!(is_local("http://localhost:1/x"));
        assert!(!is_local("http://10.0.0.1:7770"));
        assert!(!is_local("http://example.com"));
    }

    #[test]
    fn config_files_parse_and_reject_typos() {
        let c: FileConfig =
            toml::from_str("url = \"http://h:1\"\napi_key = \"k\"\n").unwrap_or_default();
        assert_eq!(c.url.as_deref(), Some("http://h:1"));
        assert_eq!(c.api_key.as_deref(), Some("k"));
        assert!(toml::from_str::<FileConfig>("apikey = \"k\"").is_err());
    }
}
