//! The `ssm-emulator` command: serves a local SSM endpoint until interrupted,
//! or for as long as a client command given after `--` runs.
//!
//! It prints exactly one line, `listening on http://ADDR`, once the socket is
//! bound, so scripts and tests can read the address: on stdout when serving
//! until interrupted, on stderr when running a client command (whose stdout
//! is its own). Logs go to stderr (`RUST_LOG` adjusts them). Exit status: 0
//! after SIGINT or SIGTERM, the client command's status, 1 when the emulator
//! cannot start, 2 for invalid arguments.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssm_emulator::{
    Config, Credentials, Emulator, Faults, Instance, LatencyRange, PingStatus, PlatformType,
    Throttle,
};

/// A local AWS Systems Manager endpoint that really runs commands.
///
/// Requests must be SigV4-signed for service `ssm`. Unless --access-key is given,
/// the key is AKIDRAILBOXEMULATOR with secret railbox-emulator-secret. Faults can
/// be changed while running: POST a JSON object to /_emulator/faults, e.g.
/// {"error_rate": 0.1}; GET /_emulator/faults and /_emulator/calls report state.
#[derive(Debug, Parser)]
#[command(
    name = "ssm-emulator",
    version,
    after_help = "Exit status: 0 after SIGINT or SIGTERM, the client command's status when one is given, 1 if the emulator cannot start, 2 for invalid arguments."
)]
struct Cli {
    /// Run this client command against the emulator, then stop: it gets
    /// AWS_ENDPOINT_URL_SSM, AWS_REGION and the first access key in its environment.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,

    /// Number of generated instances: i-00000000000000001, ... named node-1, ... at 10.0.0.1, ...
    #[arg(
        long,
        default_value_t = 3,
        value_name = "N",
        conflicts_with = "instances_file"
    )]
    instances: u32,

    /// Read instances from a .json or .toml file with an `instances` list instead of generating them.
    #[arg(long, value_name = "PATH")]
    instances_file: Option<PathBuf>,

    /// Mark the last N generated instances as ConnectionLost.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        conflicts_with = "instances_file"
    )]
    offline: u32,

    /// Platform of the generated instances.
    #[arg(long, value_enum, default_value_t = Platform::Linux)]
    platform: Platform,

    /// Region that requests must be signed for.
    #[arg(long, default_value = ssm_emulator::DEFAULT_REGION, value_name = "REGION")]
    region: String,

    /// Accepted access key as ID:SECRET or ID:SECRET:SESSION_TOKEN; repeatable; replaces the default key.
    #[arg(long = "access-key", value_name = "ID:SECRET", value_parser = parse_access_key)]
    access_keys: Vec<Credentials>,

    /// Behave like the real service's timing: pickup in 0.1-0.7 s, invocations visible after 0.5 s.
    #[arg(long)]
    realistic_latency: bool,

    /// Answer `true`, `false`, `exit N` and plain `echo` without starting processes.
    #[arg(long)]
    builtin_commands: bool,

    /// Throttle an operation (or `*` for all) as a token bucket; repeatable.
    #[arg(long, value_name = "OP=RATE:BURST", value_parser = parse_throttle)]
    throttle: Vec<(String, Throttle)>,

    /// Fraction of calls answered with 500 InternalServerError.
    #[arg(long, value_name = "RATE")]
    error_rate: Option<f64>,

    /// Fraction of calls whose connection is reset without an answer.
    #[arg(long, value_name = "RATE")]
    reset_rate: Option<f64>,

    /// Delay before every API response, in milliseconds.
    #[arg(long, value_name = "MS")]
    response_delay_ms: Option<u64>,

    /// How long invocations stay invisible (InvocationDoesNotExist) after SendCommand, in milliseconds.
    #[arg(long, value_name = "MS")]
    invocation_does_not_exist_ms: Option<u64>,

    /// Agent pickup latency in milliseconds, fixed or as MIN-MAX.
    #[arg(long, value_name = "MS[-MS]", value_parser = parse_latency)]
    agent_latency_ms: Option<LatencyRange>,

    /// Multiplier for TimeoutSeconds and executionTimeout (0.01 makes 30 s last 0.3 s).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    time_scale: f64,

    /// Largest total size of SendCommand Parameters, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_parameters_bytes: Option<usize>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Platform {
    Linux,
    Windows,
    #[value(name = "macos")]
    MacOs,
}

fn parse_access_key(s: &str) -> Result<Credentials, String> {
    Credentials::parse(s).map_err(|e| e.to_string())
}

fn parse_throttle(s: &str) -> Result<(String, Throttle), String> {
    Throttle::parse_flag(s)
}

fn parse_latency(s: &str) -> Result<LatencyRange, String> {
    let number = |n: &str| {
        n.trim()
            .parse::<u64>()
            .map_err(|_| format!("invalid milliseconds {n:?}"))
    };
    match s.split_once('-') {
        Some((min, max)) => Ok(LatencyRange {
            min: number(min)?,
            max: number(max)?,
        }),
        None => Ok(LatencyRange::fixed(number(s)?)),
    }
}

impl Cli {
    fn into_config(self) -> anyhow::Result<Config> {
        let instances = match &self.instances_file {
            Some(path) => ssm_emulator::load_instances(path)?,
            None => self.generated_instances(),
        };
        let mut faults = if self.realistic_latency {
            Faults::realistic()
        } else {
            Faults::default()
        };
        faults.throttle.extend(self.throttle);
        faults.error_rate = self.error_rate.unwrap_or(faults.error_rate);
        faults.reset_rate = self.reset_rate.unwrap_or(faults.reset_rate);
        faults.response_delay_ms = self.response_delay_ms.unwrap_or(faults.response_delay_ms);
        faults.invocation_does_not_exist_ms = self
            .invocation_does_not_exist_ms
            .unwrap_or(faults.invocation_does_not_exist_ms);
        faults.agent_latency_ms = self.agent_latency_ms.unwrap_or(faults.agent_latency_ms);

        let defaults = Config::default();
        Ok(Config {
            listen: self.listen,
            region: self.region,
            credentials: if self.access_keys.is_empty() {
                defaults.credentials.clone()
            } else {
                self.access_keys
            },
            instances,
            faults,
            builtin_commands: self.builtin_commands,
            time_scale: self.time_scale,
            max_parameters_bytes: self
                .max_parameters_bytes
                .unwrap_or(defaults.max_parameters_bytes),
            ..defaults
        })
    }

    fn generated_instances(&self) -> Vec<Instance> {
        let platform = match self.platform {
            Platform::Linux => PlatformType::Linux,
            Platform::Windows => PlatformType::Windows,
            Platform::MacOs => PlatformType::MacOS,
        };
        let online = self.instances.saturating_sub(self.offline);
        (1..=self.instances)
            .map(|n| {
                let instance = Instance::numbered(n).with_platform(platform);
                if n > online {
                    instance.with_ping_status(PingStatus::ConnectionLost)
                } else {
                    instance
                }
            })
            .collect()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client command's own output matters more than the emulator's news.
    let default_filter = if cli.command.is_empty() {
        "ssm_emulator=info"
    } else {
        "ssm_emulator=warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ssm-emulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    let command = std::mem::take(&mut cli.command);
    let config = cli.into_config()?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async {
        let key = config.credentials.first().cloned();
        let emulator = Emulator::start(config).await?;
        let listening = format!("listening on {}", emulator.endpoint_url());
        let Some((program, args)) = command.split_first() else {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{listening}").context("failed to write to stdout")?;
            stdout.flush().context("failed to write to stdout")?;
            drop(stdout);
            wait_for_signal().await?;
            emulator.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        };
        eprintln!("{listening}");
        let mut client = tokio::process::Command::new(program);
        client
            .args(args)
            .env("AWS_ENDPOINT_URL_SSM", emulator.endpoint_url())
            .env("AWS_REGION", emulator.region())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
        if let Some(key) = key {
            client
                .env("AWS_ACCESS_KEY_ID", &key.access_key_id)
                .env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key);
            if let Some(token) = &key.session_token {
                client.env("AWS_SESSION_TOKEN", token);
            }
        }
        let status = client
            .status()
            .await
            .with_context(|| format!("failed to run {program}"))?;
        emulator.shutdown().await;
        let code = status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1));
        Ok(ExitCode::from(code))
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("failed to watch SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("failed to watch SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("signal received, stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_build_the_expected_config() {
        let cli = Cli::try_parse_from([
            "ssm-emulator",
            "--instances",
            "4",
            "--offline",
            "1",
            "--throttle",
            "SendCommand=2:3",
            "--agent-latency-ms",
            "10-30",
            "--access-key",
            "AKID:secret",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        assert_eq!(config.instances.len(), 4);
        assert_eq!(config.instances[3].ping_status, PingStatus::ConnectionLost);
        assert_eq!(config.instances[2].ping_status, PingStatus::Online);
        assert_eq!(config.faults.throttle["SendCommand"].burst, 3);
        assert_eq!(
            config.faults.agent_latency_ms,
            LatencyRange { min: 10, max: 30 }
        );
        assert_eq!(config.credentials, vec![Credentials::new("AKID", "secret")]);
    }
}
