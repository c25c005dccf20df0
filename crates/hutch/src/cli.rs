//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hutch: self-hosted sandboxes for AI agents, speaking the HopX API.
#[derive(Debug, Parser)]
#[command(name = "hutch", version, about, long_about = None, after_help = TOP_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server: the HopX control plane and agent gateway on one port.
    #[command(
        after_help = "Examples:\n  sudo hutch serve\n  sudo hutch serve --listen 0.0.0.0:7770 --data-dir /srv/hutch --api-key secret"
    )]
    Serve(ServeArgs),
    /// Measure hutch against references taken in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Remove every sandbox of a data directory and stop its spawner, without a server.
    #[command(
        after_help = "Stop `hutch serve` first; the records are dropped on its next start.\n\nExample:\n  sudo hutch purge --data-dir /var/lib/hutch"
    )]
    Purge(PurgeArgs),
    /// Create a sandbox and print its id.
    #[command(
        after_help = "Examples:\n  hutch create\n  ID=$(hutch create --template code-interpreter --timeout 600 --env API_URL=http://x)\n  hutch create --no-internet --json"
    )]
    Create(CreateArgs),
    /// List sandboxes.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  hutch ls\n  hutch ls --status running\n  hutch kill $(hutch ls -q)\n  hutch ls --json | jq '.[].id'"
    )]
    Ls(LsArgs),
    /// Show a sandbox's details.
    #[command(
        after_help = "Examples:\n  hutch info sb-abc123\n  hutch info sb-abc123 --json | jq .expires_at"
    )]
    Info(IdArgs),
    /// Delete sandboxes and everything in them.
    #[command(
        visible_alias = "rm",
        after_help = "Examples:\n  hutch kill sb-abc123\n  hutch kill $(hutch ls -q --status stopped)"
    )]
    Kill(IdsArgs),
    /// Freeze sandboxes: their processes stop, memory and files are kept.
    #[command(after_help = "Example:\n  hutch pause sb-abc123 && hutch resume sb-abc123")]
    Pause(IdsArgs),
    /// Thaw paused sandboxes.
    #[command(after_help = "Example:\n  hutch resume sb-abc123")]
    Resume(IdsArgs),
    /// Stop sandboxes: every process ends, files are kept.
    #[command(after_help = "Example:\n  hutch stop sb-abc123 && hutch start sb-abc123")]
    Stop(IdsArgs),
    /// Start stopped sandboxes again.
    #[command(after_help = "Example:\n  hutch start sb-abc123")]
    Start(IdsArgs),
    /// Set when a sandbox is deleted: SECONDS from now.
    #[command(after_help = "Examples:\n  hutch timeout sb-abc123 3600   # delete it in an hour")]
    Timeout(TimeoutArgs),
    /// Run code and print its output (in a throw-away sandbox unless --sandbox is given).
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Run a program in a sandbox (argv as given, no shell).
    #[command(
        after_help = "Examples:\n  hutch exec sb-abc123 -- ls -la /workspace\n  hutch exec sb-abc123 -- bash -c 'echo $HOME; exit 3'; echo $?\n  hutch exec --workdir /tmp --env DEBUG=1 sb-abc123 -- python3 job.py"
    )]
    Exec(ExecArgs),
    /// Copy files and directories between this machine and a sandbox.
    #[command(after_help = CP_HELP)]
    Cp(CpArgs),
    /// Open an interactive shell in a sandbox.
    #[command(
        after_help = "The shell is bash on a terminal in the sandbox; `exit` (or Ctrl-D) leaves it and\nhutch exits with the shell's exit status. Without a terminal, standard input is typed\ninto the shell.\n\nExamples:\n  hutch shell sb-abc123\n  echo 'uname -a' | hutch shell sb-abc123"
    )]
    Shell(ShellArgs),
    /// List, inspect, delete and build templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  hutch completions bash > /etc/bash_completion.d/hutch\n  hutch completions zsh > \"${fpath[1]}/_hutch\"\n  hutch completions fish > ~/.config/fish/completions/hutch.fish"
    )]
    Completions(CompletionsArgs),
    /// Serve hutch's tools to an MCP client over standard input and output.
    #[command(after_help = MCP_HELP)]
    Mcp(McpArgs),
    /// Print the OpenAPI document of the whole HTTP API (control plane and agent) as JSON.
    #[command(after_help = "Example:\n  hutch openapi > openapi/hutch.json")]
    Openapi,
}

/// `hutch purge` options.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The data directory whose sandboxes to remove.
    #[arg(long, env = "HUTCH_DATA_DIR", default_value = "/var/lib/hutch")]
    pub data_dir: PathBuf,
}

/// `hutch serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (IPv4: the HopX SDK binds its client sockets to 0.0.0.0).
    #[arg(long, default_value = "127.0.0.1:7770", env = "HUTCH_LISTEN")]
    pub listen: SocketAddr,
    /// Where sandboxes, templates and the database live.
    #[arg(long, env = "HUTCH_DATA_DIR", default_value = "/var/lib/hutch")]
    pub data_dir: PathBuf,
    /// API key clients must send. Default: the one saved in the data dir, created on first start.
    #[arg(long, env = "HUTCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Base URL clients reach this server at (sandboxes' `public_host`). Default: from --listen.
    #[arg(long, env = "HUTCH_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Warm sandboxes kept ready so creates skip set-up (0 disables the pool).
    #[arg(long, env = "HUTCH_POOL_SIZE", default_value_t = 2)]
    pub pool_size: usize,
    /// Log filter (tracing syntax), e.g. `info` or `hutch_manager=debug`.
    #[arg(long, env = "HUTCH_LOG", default_value = "info")]
    pub log: String,
}

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sandbox lifecycle: create → run → kill, against bare bwrap and python3 in the same run.
    Lifecycle(LifecycleArgs),
    /// Code execution through the HTTP API: warm round trips, create → first output (cold and
    /// pooled), concurrent creates; against bare python3 and bwrap in the same run.
    Exec(ExecBenchArgs),
}

/// `hutch bench exec` options.
#[derive(Debug, Args)]
pub struct ExecBenchArgs {
    /// Creates measured per mode (cold, pooled).
    #[arg(short = 'n', long, default_value_t = 50)]
    pub iterations: usize,
    /// Warm `1+1` round trips measured.
    #[arg(long, default_value_t = 500)]
    pub round_trips: usize,
    /// Sandboxes created at once in the burst measurement.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Warm pool size of the pooled server.
    #[arg(long, default_value_t = 2)]
    pub pool_size: usize,
}

/// `hutch bench lifecycle` options.
#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Iterations per measurement.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub iterations: usize,
    /// Give the sandboxes internet access (veth + NAT) instead of loopback only.
    #[arg(long)]
    pub internet: bool,
    /// Data directory for the benchmark's sandboxes (default: a fresh temporary one).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

// ---- Client verbs: they talk to a running server. ----

const TOP_HELP: &str =
    "The client verbs (create, ls, run, exec, cp, shell, template, mcp, …) talk to a server:
  --url URL      or HUTCH_URL      or `url` in the config file      [default: http://127.0.0.1:7770]
  --api-key KEY  or HUTCH_API_KEY  or `api_key` in the config file
in that order of precedence. The config file is $XDG_CONFIG_HOME/hutch/config.toml
(~/.config/hutch/config.toml). Without a key anywhere, a server on this machine is tried
with the key `hutch serve` saved in /var/lib/hutch/api_key, when that file is readable.
Every verb takes --json to print the server's objects for scripts.

Examples:
  sudo hutch serve &
  hutch run 'print(\"hello from a sandbox\")'
  ID=$(hutch create) && hutch shell $ID
  hutch mcp                      # the tools for an MCP client, on stdin/stdout
  hutch completions bash > /etc/bash_completion.d/hutch";

const RUN_HELP: &str =
    "The language is --lang (python, javascript/js/node, bash, go), else the file's extension or
#! line, else python. Standard output and error are printed as they come; hutch exits with
the program's exit status (124 when it timed out). Images and other rich outputs (a
matplotlib figure, HTML) are saved as output-N.<ext> in --out-dir, and their paths printed
on standard error. Without --sandbox a sandbox is created for the run and deleted after it,
also on errors and Ctrl-C.

Examples:
  hutch run 'print(6 * 7)'
  hutch run -f analysis.py
  echo 'console.log(process.version)' | hutch run --lang js -
  hutch run --sandbox sb-abc123 'import matplotlib.pyplot as plt; plt.plot([1, 3, 2])'
  hutch run --lang bash 'echo out; echo err >&2; exit 3'; echo \"exit status $?\"";

const CP_HELP: &str =
    "One side is ID:PATH (a path in sandbox ID; relative to /workspace), the other a local
path, or - for standard input/output (single files only). Directories are copied
recursively, like `cp -r`: into DST when DST is an existing directory, else as DST.
Symbolic links are skipped with a warning; file modes are kept on upload.

Examples:
  hutch cp data.csv sb-abc123:/workspace/
  hutch cp ./project sb-abc123:/workspace/project
  hutch cp sb-abc123:/workspace/output.png .
  hutch cp sb-abc123:/etc/os-release - | head -2
  tar c . | hutch cp - sb-abc123:/tmp/src.tar";

const MCP_HELP: &str =
    "An MCP server on standard input/output for MCP clients that launch a command. Its tools
(execute, shell_execute, file_read, file_write, file_list, list_artifacts, cleanup_artifacts,
get_execution_info, start_web_app, create_manim_animation, sandbox_create, sandbox_list,
sandbox_kill) run in a sandbox of this session's own, created on the first tool call and
deleted when the client disconnects or hutch mcp is stopped (and after --sandbox-timeout in
any case). A tool given a sandbox_id works in that sandbox instead. Logs go to standard error.
The server also serves the same tools over streamable HTTP at /mcp (API key required).

Example client configuration (Claude Desktop, claude_desktop_config.json):
  {\"mcpServers\": {\"hutch\": {\"command\": \"hutch\", \"args\": [\"mcp\"],
    \"env\": {\"HUTCH_URL\": \"http://127.0.0.1:7770\", \"HUTCH_API_KEY\": \"<key>\"}}}}

Examples:
  hutch mcp
  hutch mcp --url http://127.0.0.1:7770 --api-key \"$KEY\" --template code-interpreter";

/// `hutch mcp` options.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Template of the session's sandbox (and the default of the sandbox_create tool).
    #[arg(short, long, default_value = "code-interpreter")]
    pub template: String,
    /// Seconds after which hutch deletes sandboxes the session created, should the session
    /// never end cleanly.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub sandbox_timeout: u64,
    /// Log filter for standard error (tracing syntax), e.g. `info`.
    #[arg(long, env = "HUTCH_MCP_LOG", default_value = "warn")]
    pub log: String,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// How the client verbs reach the server. Precedence: flag, then environment, then the
/// config file (`$XDG_CONFIG_HOME/hutch/config.toml`, default `~/.config/hutch/config.toml`,
/// keys `url` and `api_key`), then the defaults.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ClientOpts {
    /// Server URL [default: http://127.0.0.1:7770]
    #[arg(long, env = "HUTCH_URL", value_name = "URL")]
    pub url: Option<String>,
    /// API key [default: config file, else /var/lib/hutch/api_key for a server on this machine]
    #[arg(
        long,
        env = "HUTCH_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Print the server's JSON objects instead of human output.
    #[arg(long)]
    pub json: bool,
}

/// Parses `KEY=VALUE`; a bare `KEY` takes its value from this process's environment.
fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => match std::env::var(s) {
            Ok(v) => (s.to_string(), v),
            Err(_) => return Err(format!("{s:?} is not KEY=VALUE and not set here")),
        },
    };
    if k.is_empty() {
        return Err(format!("{s:?} has an empty name"));
    }
    Ok((k, v))
}

/// `hutch create` options.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Template name or id (see `hutch template ls`).
    #[arg(short, long, default_value = "code-interpreter")]
    pub template: String,
    /// Delete the sandbox after this many seconds [default: the server's]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<i64>,
    /// No network access beyond the sandbox's own loopback.
    #[arg(long)]
    pub no_internet: bool,
    /// Environment variable for every process in the sandbox (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch ls` options.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only sandboxes with this status (running, paused, stopped, creating).
    #[arg(long)]
    pub status: Option<String>,
    /// Print ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// One sandbox.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Sandbox id.
    pub id: String,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// One or more sandboxes.
#[derive(Debug, Args)]
pub struct IdsArgs {
    /// Sandbox ids.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch timeout` options.
#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// Sandbox id.
    pub id: String,
    /// Seconds from now.
    pub seconds: i64,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The code; `-` reads it from standard input.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub code: Option<String>,
    /// Read the code from this file.
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// python, javascript (js, node), bash or go.
    #[arg(short, long, value_name = "LANG")]
    pub lang: Option<String>,
    /// Run in this sandbox (kept afterwards; the interpreter's state persists between runs).
    #[arg(short, long, value_name = "ID")]
    pub sandbox: Option<String>,
    /// Template of the throw-away sandbox.
    #[arg(
        short,
        long,
        default_value = "code-interpreter",
        conflicts_with = "sandbox"
    )]
    pub template: String,
    /// Stop the code after this many seconds (exit status 124).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Environment variable for this run (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory in the sandbox [default: /workspace]
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Where images and other rich outputs are saved.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Keep the throw-away sandbox and print its id on standard error.
    #[arg(long, conflicts_with = "sandbox")]
    pub keep: bool,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch exec` options.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id.
    pub id: String,
    /// The program and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
    /// Working directory in the sandbox [default: /workspace]
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Environment variable (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Kill the program after this many seconds (exit status 124).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch cp` options.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path, `-`, or ID:PATH.
    pub src: String,
    /// Destination: a local path, `-`, or ID:PATH.
    pub dst: String,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch shell` options.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Sandbox id.
    pub id: String,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch template …`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  hutch template ls\n  hutch template ls --json | jq '.[].name'"
    )]
    Ls(TemplateLsArgs),
    /// Show a template.
    #[command(after_help = "Example:\n  hutch template info code-interpreter")]
    Info(TemplateNameArgs),
    /// Delete a template (built-in ones cannot be deleted).
    #[command(
        visible_alias = "delete",
        after_help = "Example:\n  hutch template rm my-template"
    )]
    Rm(TemplateNameArgs),
    /// Build a template from a TOML spec, following its progress and log.
    #[command(
        after_help = "The spec file is sent to the server as it is; the server checks it and names any problem.\nhutch follows the build until it ends and exits non-zero if it failed.\n\nExamples:\n  hutch template build my-python -f template.toml\n  hutch template build my-python -f template.toml --force   # replace an existing one"
    )]
    Build(TemplateBuildArgs),
}

/// `hutch template ls` options.
#[derive(Debug, Args)]
pub struct TemplateLsArgs {
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// One template.
#[derive(Debug, Args)]
pub struct TemplateNameArgs {
    /// Template name or id.
    pub name: String,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch template build` options.
#[derive(Debug, Args)]
pub struct TemplateBuildArgs {
    /// Name of the new template.
    pub name: String,
    /// The template spec (TOML).
    #[arg(short, long, value_name = "SPEC.toml")]
    pub file: PathBuf,
    /// Replace a template of the same name.
    #[arg(long)]
    pub force: bool,
    /// Connection.
    #[command(flatten)]
    pub client: ClientOpts,
}

/// `hutch completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
