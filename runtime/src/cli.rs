//! The railbox command line: one CLI for every transport, picked by the
//! target URL's scheme.
//!
//! Errors are one line on stderr, `railbox: ...`, and the exit status says
//! what kind of failure it was (see [`exit`]); `run` exits with the remote
//! command's own status.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::connect::{self, ConnectError, Request};
use crate::engine::{Runtime, RuntimeConfig};
use crate::policy::PolicyFile;
use crate::session::{ProgressFn, Session, SessionError};
use crate::wrap::{Wrap, WrapError};

/// Exit statuses railbox uses for its own failures.
pub mod exit {
    /// `stat`: nothing is at the path.
    pub const MISSING: u8 = 1;
    /// `conformance`: at least one check failed.
    pub const CHECK_FAILED: u8 = 1;
    /// `exec`: interrupted with ^C.
    pub const INTERRUPTED: u8 = 130;
    /// The remote command did not finish within its timeout.
    pub const TIMEOUT: u8 = 124;
    /// railbox could not start: bad arguments, URL, option, policy or
    /// transport file.
    pub const USAGE: u8 = 125;
    /// The transport or target failed: not found, denied, unreachable,
    /// protocol error, or the transport itself crashed.
    pub const TRANSPORT: u8 = 255;
}

/// Run commands on remote machines through sandboxed WebAssembly transports.
///
/// The target URL's scheme picks the transport, e.g.
/// `awsssm://i-0123456789abcdef0/?execution_timeout=600`.
#[derive(Debug, Parser)]
#[command(name = "railbox", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a shell command on the target and exit with its status.
    Run(RunArgs),
    /// Copy a local file to the target.
    Upload(UploadArgs),
    /// Copy a file from the target to a local path.
    Download(DownloadArgs),
    /// Detect the target's platform (OS name, family, release, arch) in one round trip.
    Detect(DetectArgs),
    /// Show what a path on the target is: kind, size, mode, owner, mtime; exit 1 if nothing is there.
    Stat(StatArgs),
    /// Upload a script to a private directory on the target, run it, remove it, exit with its status.
    Exec(ExecArgs),
    /// Run commands line by line, keeping the working directory between them.
    Shell(ShellArgs),
    /// Check a transport against the behaviours every transport must have; exit 1 if any fails.
    Conformance(ConformanceArgs),
    /// List the built-in and installed transports.
    Transports(TransportsArgs),
    /// Show what a transport component imports, declares and may reach.
    Inspect(InspectArgs),
}

/// Options shared by every command that connects to a target.
#[derive(Debug, Args)]
struct ConnectArgs {
    /// Target URL, such as awsssm://i-0123456789abcdef0/.
    url: String,

    /// Set a transport option, as if in the URL's query (repeatable).
    #[arg(short = 'o', long = "option", value_name = "NAME=VALUE", value_parser = parse_option)]
    options: Vec<(String, String)>,

    /// Load a transport from this .wasm file before the installed ones (repeatable).
    #[arg(long = "transport", value_name = "PATH")]
    transports: Vec<PathBuf>,

    /// Apply this policy file on top of the transport's defaults.
    #[arg(long, value_name = "FILE", env = "RAILBOX_POLICY")]
    policy: Option<PathBuf>,
}

/// How to wrap the remote command.
#[derive(Debug, Args)]
struct WrapArgs {
    /// Run through `sudo -n` (which fails rather than ask for a password).
    #[arg(long)]
    sudo: bool,

    /// Run as this user (with --sudo through `sudo -u`, otherwise `su`).
    #[arg(long, value_name = "USER")]
    user: Option<String>,

    /// Change to this directory on the target first.
    #[arg(long, value_name = "DIR")]
    cwd: Option<String>,

    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_option)]
    env: Vec<(String, String)>,
}

impl WrapArgs {
    fn wrap(&self) -> Wrap {
        Wrap {
            sudo: self.sudo,
            user: self.user.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(flatten)]
    wrap: WrapArgs,

    /// Give up on the command after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    timeout: f64,

    /// Print one JSON object with stdout, stderr and exit status.
    #[arg(long)]
    json: bool,

    /// The command and its arguments, joined with spaces for the remote shell.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct UploadArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Local file to send.
    local: PathBuf,

    /// Path to write on the target.
    remote: String,
}

#[derive(Debug, Args)]
struct DownloadArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Path of the file on the target.
    remote: String,

    /// Local path to write.
    local: PathBuf,
}

#[derive(Debug, Args)]
struct DetectArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Path on the target; a final symbolic link is not followed.
    path: String,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TransportsArgs {
    /// Also load this .wasm file (repeatable).
    #[arg(long = "transport", value_name = "PATH")]
    transports: Vec<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The transport component to inspect.
    file: PathBuf,

    /// Show the effective policy for this target URL.
    #[arg(long, value_name = "URL")]
    target: Option<String>,

    /// Apply this policy file when showing the effective policy.
    #[arg(long, value_name = "FILE", env = "RAILBOX_POLICY")]
    policy: Option<PathBuf>,

    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExecArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(flatten)]
    wrap: WrapArgs,

    /// Give up on the script after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    timeout: f64,

    /// Local script to run on the target.
    script: PathBuf,

    /// Arguments passed to the script, each as one word.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

#[derive(Debug, Args)]
struct ShellArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    #[command(flatten)]
    wrap: WrapArgs,

    /// Give up on each line after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0)]
    timeout: f64,
}

#[derive(Debug, Args)]
struct ConformanceArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// A failure, with the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// One-line message.
    pub message: String,
}

impl Failure {
    /// A failure before reaching the target.
    pub fn usage(message: impl ToString) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.to_string(),
        }
    }
}

impl From<ConnectError> for Failure {
    fn from(err: ConnectError) -> Failure {
        match err {
            ConnectError::Session(e) => e.into(),
            other => Failure::usage(other),
        }
    }
}

impl From<crate::files::FilesError> for Failure {
    fn from(err: crate::files::FilesError) -> Failure {
        match err {
            crate::files::FilesError::Session(e) => e.into(),
            unreadable => Failure {
                code: exit::TRANSPORT,
                message: unreadable.to_string(),
            },
        }
    }
}

impl From<SessionError> for Failure {
    fn from(err: SessionError) -> Failure {
        let code = if err.is_timeout() {
            exit::TIMEOUT
        } else {
            exit::TRANSPORT
        };
        Failure {
            code,
            message: err.to_string(),
        }
    }
}

/// Parse the command line, run it and return the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { exit::USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Failure::usage(format!("cannot start: {e}"))),
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    let message = failure.message.replace('\n', " ");
    eprintln!("railbox: {message}");
    ExitCode::from(failure.code)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAILBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("railbox=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime =
        Runtime::new(RuntimeConfig::default()).map_err(|e| Failure::usage(format!("{e:#}")))?;
    match cli.command {
        Command::Run(args) => run(&runtime, args).await,
        Command::Upload(args) => upload(&runtime, args).await,
        Command::Download(args) => download(&runtime, args).await,
        Command::Detect(args) => detect(&runtime, args).await,
        Command::Stat(args) => stat(&runtime, args).await,
        Command::Exec(args) => exec(&runtime, args).await,
        Command::Shell(args) => shell(&runtime, args).await,
        Command::Conformance(args) => conformance(&runtime, args).await,
        Command::Transports(args) => {
            crate::inspect::list(&runtime, &args.transports, args.json).await
        }
        Command::Inspect(args) => {
            let policy = load_policy(args.policy.as_ref())?;
            crate::inspect::inspect(
                &runtime,
                &args.file,
                args.target.as_deref(),
                policy,
                args.json,
            )
            .await
        }
    }
}

fn load_policy(path: Option<&PathBuf>) -> Result<Option<PolicyFile>, Failure> {
    path.map(|p| PolicyFile::load(p).map_err(Failure::usage))
        .transpose()
}

async fn open(
    runtime: &Arc<Runtime>,
    args: &ConnectArgs,
    progress: Option<ProgressFn>,
) -> Result<Session, Failure> {
    let request = Request {
        url: args.url.clone(),
        options: args.options.clone(),
        transports: args.transports.clone(),
        policy: load_policy(args.policy.as_ref())?,
        aws_credentials: None,
        fallback_secrets: std::env::var("RAILBOX_PASSWORD")
            .ok()
            .map(|p| vec![("password".to_string(), p)])
            .unwrap_or_default(),
    };
    let (_, session) = connect::connect(runtime, &request, progress)
        .await
        .map_err(|e| context(&args.url, e.into()))?;
    Ok(session)
}

fn context(url: &str, failure: Failure) -> Failure {
    Failure {
        code: failure.code,
        message: format!("{}: {}", crate::target::redact(url), failure.message),
    }
}

fn parse_timeout(secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--timeout must be a positive number of seconds, got {secs}"
            ))
        })
}

impl From<WrapError> for Failure {
    fn from(err: WrapError) -> Failure {
        Failure::usage(err)
    }
}

async fn run(runtime: &Arc<Runtime>, args: RunArgs) -> Result<u8, Failure> {
    let timeout = parse_timeout(args.timeout)?;
    let command = args.wrap.wrap().apply(&args.command.join(" "))?;
    let result = async {
        let mut session = open(runtime, &args.connect, None).await?;
        let output = session.run(&command, timeout).await;
        let _ = session.close().await;
        output.map_err(|e| context(&args.connect.url, e.into()))
    }
    .await;
    match (result, args.json) {
        (Ok(output), false) => {
            print_output(&output);
            Ok(exit_status(output.exit_status))
        }
        (Ok(output), true) => {
            let mut value = json!({ "exit_status": output.exit_status });
            put_bytes(&mut value, "stdout", &output.stdout);
            put_bytes(&mut value, "stderr", &output.stderr);
            println!("{value}");
            Ok(exit_status(output.exit_status))
        }
        (Err(failure), true) => {
            println!(
                "{}",
                json!({ "error": failure.message, "exit_status": failure.code })
            );
            Ok(failure.code)
        }
        (Err(failure), false) => Err(failure),
    }
}

/// Map a remote exit status to this process's, 0 to 255; anything outside
/// that range becomes 255.
fn exit_status(status: i32) -> u8 {
    u8::try_from(status).unwrap_or(exit::TRANSPORT)
}

/// Put bytes in a JSON object as text when they are UTF-8, else as base64
/// under `<key>_base64`.
fn put_bytes(value: &mut serde_json::Value, key: &str, bytes: &[u8]) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(text) => value[key] = json!(text),
        Err(_) => {
            value[key] = json!(String::from_utf8_lossy(bytes));
            value[format!("{key}_base64")] =
                json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
}

async fn upload(runtime: &Arc<Runtime>, args: UploadArgs) -> Result<u8, Failure> {
    let data = std::fs::read(&args.local)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.local.display())))?;
    let mode = file_mode(&args.local);
    let (bar, progress) = progress_bar(data.len() as u64);
    let mut session = open(runtime, &args.connect, progress).await?;
    let sent = crate::files::write(&mut session, &args.remote, &data, mode).await;
    let _ = session.close().await;
    bar.finish_and_clear();
    sent.map_err(|e| context(&args.connect.url, e.into()))?;
    Ok(0)
}

async fn download(runtime: &Arc<Runtime>, args: DownloadArgs) -> Result<u8, Failure> {
    let (bar, progress) = progress_bar(0);
    let mut session = open(runtime, &args.connect, progress).await?;
    let data = crate::files::read(&mut session, &args.remote).await;
    let _ = session.close().await;
    bar.finish_and_clear();
    let data = data.map_err(|e| context(&args.connect.url, e.into()))?;
    write_atomically(&args.local, &data)
        .map_err(|e| Failure::usage(format!("cannot write {}: {e}", args.local.display())))?;
    Ok(0)
}

async fn detect(runtime: &Arc<Runtime>, args: DetectArgs) -> Result<u8, Failure> {
    let mut session = open(runtime, &args.connect, None).await?;
    let detected = crate::platform::detect(&mut session).await;
    let _ = session.close().await;
    let platform = detected.map_err(|e| context(&args.connect.url, e.into()))?;
    if args.json {
        println!("{}", serde_json::to_value(&platform).unwrap_or_default());
    } else {
        println!("name:     {}", platform.name);
        println!("families: {}", platform.families.join(", "));
        println!("release:  {}", platform.release);
        println!("arch:     {}", platform.arch);
        println!("kernel:   {}", platform.kernel);
    }
    Ok(0)
}

async fn stat(runtime: &Arc<Runtime>, args: StatArgs) -> Result<u8, Failure> {
    let mut session = open(runtime, &args.connect, None).await?;
    let answer = crate::files::stat(&mut session, &args.path).await;
    let _ = session.close().await;
    let found = answer.map_err(|e| context(&args.connect.url, e.into()))?;
    let Some(stat) = found else {
        let missing = Failure {
            code: exit::MISSING,
            message: format!("nothing at {:?}", args.path),
        };
        return Err(context(&args.connect.url, missing));
    };
    if args.json {
        println!("{}", serde_json::to_value(&stat).unwrap_or_default());
    } else {
        let kind = serde_json::to_value(stat.kind).unwrap_or_default();
        println!("kind:   {}", kind.as_str().unwrap_or_default());
        println!("size:   {}", stat.size);
        println!("mode:   {:04o}", stat.mode);
        println!("owner:  {} ({})", stat.owner, stat.uid);
        println!("group:  {} ({})", stat.group, stat.gid);
        println!("mtime:  {}", stat.mtime);
        if let Some(target) = &stat.link_target {
            println!("target: {target}");
        }
    }
    Ok(0)
}

/// Write a command's output to this process's stdout and stderr.
fn print_output(output: &crate::bindings::types::CommandOutput) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&output.stdout).and_then(|()| out.flush());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(&output.stderr).and_then(|()| err.flush());
}

/// Upload a script to a private directory, run it, remove the directory
/// whatever happens, and exit with the script's status.
///
/// The script's output is printed when it ends, not as it runs: the
/// contract's `run` returns output whole, and no transport can hand it over
/// sooner until the contract gains a streaming call.
async fn exec(runtime: &Arc<Runtime>, args: ExecArgs) -> Result<u8, Failure> {
    let timeout = parse_timeout(args.timeout)?;
    let script = std::fs::read(&args.script)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.script.display())))?;
    let wrap = args.wrap.wrap();
    // Checked before anything reaches the target.
    wrap.apply("true")?;
    let url = args.connect.url.clone();
    let mut session = open(runtime, &args.connect, None).await?;
    // Another user must be able to reach the script; only its owner may
    // list the directory.
    let dir_mode = if args.wrap.user.is_some() {
        "711"
    } else {
        "700"
    };
    let made = session
        .run(
            &format!("d=$(mktemp -d /tmp/railbox-exec.XXXXXX) && chmod {dir_mode} \"$d\" && printf %s \"$d\""),
            Duration::from_secs(120),
        )
        .await
        .map_err(|e| context(&url, e.into()))?;
    let dir = String::from_utf8_lossy(&made.stdout).trim().to_string();
    if made.exit_status != 0 || !dir.starts_with("/tmp/railbox-exec.") {
        let _ = session.close().await;
        let said = String::from_utf8_lossy(&made.stderr);
        return Err(context(
            &url,
            Failure {
                code: exit::TRANSPORT,
                message: format!(
                    "cannot make a private directory on the target: {}",
                    said.trim()
                ),
            },
        ));
    }
    let name = args
        .script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .unwrap_or_else(|| "script".into());
    let remote = format!("{dir}/{name}");
    let mut line = crate::files::shell_quote(&remote);
    for arg in &args.args {
        line.push(' ');
        line.push_str(&crate::files::shell_quote(arg));
    }
    let command = wrap.apply(&line)?;
    let script_mode = if args.wrap.user.is_some() {
        0o755
    } else {
        0o700
    };
    let outcome = tokio::select! {
        result = async {
            crate::files::write(&mut session, &remote, &script, Some(script_mode)).await?;
            Ok::<_, Failure>(session.run(&command, timeout).await?)
        } => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(outcome) = outcome else {
        // The interrupted call may have left its session unusable, and a
        // console takes one connection at a time: the old session goes,
        // and a new one removes the directory. A script that had started
        // goes on running until the transport's own limit stops it (the
        // SSM execution timeout; on a console, until it ends).
        drop(session);
        if let Ok(mut cleanup) = open(runtime, &args.connect, None).await {
            let _ = crate::files::remove(&mut cleanup, &dir, true).await;
            let _ = cleanup.close().await;
        }
        return Err(context(
            &url,
            Failure {
                code: 130,
                message: "interrupted; the script's directory was removed".into(),
            },
        ));
    };
    let removed = crate::files::remove(&mut session, &dir, true).await;
    let _ = session.close().await;
    let output = outcome.map_err(|f| context(&url, f))?;
    print_output(&output);
    if let Err(e) = removed {
        tracing::warn!("the script ran, but {e}");
    }
    Ok(exit_status(output.exit_status))
}

/// Marks the end of a shell line's output, before the working directory.
const CWD_MARK: &str = "\u{1e}railbox-cwd\u{1e}";

async fn shell(runtime: &Arc<Runtime>, args: ShellArgs) -> Result<u8, Failure> {
    use tokio::io::AsyncBufReadExt as _;
    let timeout = parse_timeout(args.timeout)?;
    let wrap = args.wrap.wrap();
    wrap.apply("true")?;
    let url = args.connect.url.clone();
    let mut session = open(runtime, &args.connect, None).await?;
    let start = session
        .run(&wrap.apply("pwd")?, Duration::from_secs(120))
        .await
        .map_err(|e| context(&url, e.into()))?;
    let mut cwd = String::from_utf8_lossy(&start.stdout)
        .trim_end_matches('\n')
        .to_string();
    let interactive = std::io::stdin().is_terminal();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut status = 0;
    loop {
        if interactive {
            eprint!("{} {cwd}$ ", crate::target::redact(&url));
        }
        let Ok(Some(line)) = lines.next_line().await else {
            break;
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if matches!(trimmed, "exit" | "logout") {
            break;
        }
        let here = Wrap {
            cwd: Some(cwd.clone()),
            ..wrap.clone()
        };
        let body = format!(
            "{line}\nrailbox_status=$?\nprintf '{CWD_MARK}%s' \"$(pwd)\"\nexit $railbox_status"
        );
        let output = match session.run(&here.apply(&body)?, timeout).await {
            Ok(output) => output,
            Err(e) if e.is_timeout() => {
                eprintln!("railbox: {e}");
                status = exit::TIMEOUT;
                continue;
            }
            Err(e) => return Err(context(&url, e.into())),
        };
        let mut stdout = output.stdout.clone();
        let mark = CWD_MARK.as_bytes();
        if let Some(at) = stdout.windows(mark.len()).rposition(|w| w == mark) {
            cwd = String::from_utf8_lossy(&stdout[at + mark.len()..]).into_owned();
            stdout.truncate(at);
        }
        print_output(&crate::bindings::types::CommandOutput {
            stdout,
            stderr: output.stderr,
            exit_status: output.exit_status,
        });
        status = exit_status(output.exit_status);
    }
    let _ = session.close().await;
    Ok(status)
}

async fn conformance(runtime: &Arc<Runtime>, args: ConformanceArgs) -> Result<u8, Failure> {
    let mut session = open(runtime, &args.connect, None).await?;
    let transport = session.transport().to_string();
    let checks = crate::conformance::run(&mut session).await;
    let _ = session.close().await;
    let failed = checks.iter().filter(|c| !c.passed).count();
    if args.json {
        let value = json!({
            "url": crate::target::redact(&args.connect.url),
            "transport": transport,
            "passed": checks.len() - failed,
            "failed": failed,
            "checks": checks,
        });
        println!("{value}");
    } else {
        println!(
            "{transport} at {}",
            crate::target::redact(&args.connect.url)
        );
        for check in &checks {
            let verdict = if check.passed { "pass" } else { "FAIL" };
            println!(
                "  {verdict}  {:<20} {:>7.2} s  {}",
                check.name, check.seconds, check.detail
            );
        }
        println!("{} passed, {failed} failed", checks.len() - failed);
    }
    Ok(if failed == 0 { 0 } else { exit::CHECK_FAILED })
}

fn file_mode(path: &PathBuf) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Write a file through a temporary file in the same directory, so a failed
/// download never leaves a partial file behind.
fn write_atomically(path: &PathBuf, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A progress bar on a terminal, hidden otherwise, and the callback that
/// drives it.
fn progress_bar(total: u64) -> (indicatif::ProgressBar, Option<ProgressFn>) {
    if !std::io::stderr().is_terminal() {
        return (indicatif::ProgressBar::hidden(), None);
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let driven = bar.clone();
    let report: ProgressFn = Arc::new(move |operation: &str, done: u64, total: u64| {
        driven.set_message(operation.to_string());
        driven.set_length(total);
        driven.set_position(done);
    });
    (bar, Some(report))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help() {
        fn check(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                assert!(
                    builtin || arg.get_help().is_some(),
                    "{} {} has no help text",
                    cmd.get_name(),
                    arg.get_id()
                );
            }
            cmd.get_subcommands().for_each(check);
        }
        check(&Cli::command());
    }

    #[test]
    fn remote_statuses_outside_a_byte_become_255() {
        assert_eq!(exit_status(0), 0);
        assert_eq!(exit_status(123), 123);
        assert_eq!(exit_status(-1), 255);
        assert_eq!(exit_status(300), 255);
    }
}
