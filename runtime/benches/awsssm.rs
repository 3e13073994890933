//! Benchmarks of the awsssm transport against the SSM emulator, run with
//! `cargo bench -p railbox --bench awsssm`:
//!
//! - client CPU time per command: the wasm transport in railbox against a
//!   native client written with aws-sdk-ssm doing the same SendCommand and
//!   polling, both in this process while the emulator runs in another;
//! - for a command that takes 1 s on the instance: API calls per command and
//!   the latency added after the command finished, for the transport, and
//!   for a client polling every second as train-awsssm does;
//! - upload throughput of a 1 MiB file.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ssm::error::ProvideErrorMetadata as _;
use aws_sdk_ssm::types::CommandInvocationStatus;
use railbox::connect::{self, Request};
use railbox::{Runtime, RuntimeConfig, Session};
use ssm_emulator::{Config, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Faults};

const INSTANCE: &str = "i-00000000000000001";
const COMMANDS: u32 = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--emulator") {
        serve_emulator();
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let emulator = EmulatorProcess::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let cache = tempfile::tempdir().expect("temporary directory");
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().join("code")),
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let mut session = open(&runtime, &emulator.url).await;
        let sdk = sdk_client(&emulator.url).await;
        println!("{:<58} {:>12} {:>10}", "benchmark", "measured", "target");

        // Warm both clients up: code paths, connections, credentials.
        for _ in 0..10 {
            session
                .run("true", Duration::from_secs(30))
                .await
                .expect("run");
            native_run(&sdk, "true", Polling::ADAPTIVE).await;
        }
        let wasm = cpu_per_command(async || {
            session
                .run("true", Duration::from_secs(30))
                .await
                .expect("run");
        })
        .await;
        let native = cpu_per_command(async || {
            native_run(&sdk, "true", Polling::ADAPTIVE).await;
        })
        .await;
        report(
            "client CPU per command, wasm transport",
            format!("{:.2} ms", wasm * 1e3),
            "",
        );
        report(
            "client CPU per command, native aws-sdk-ssm",
            format!("{:.2} ms", native * 1e3),
            "",
        );
        report(
            "  ratio wasm / native",
            format!("{:.2}×", wasm / native),
            "≤ 1.0×",
        );

        // A fresh session meets its first 1 s command with no history, then
        // learns how long such commands take; both are reported.
        let command = "sleep 1; date +%s%N";
        let mut fresh = open(&runtime, &emulator.url).await;
        let mut run_one = async || {
            fresh
                .run(command, Duration::from_secs(30))
                .await
                .expect("run")
                .stdout
        };
        let (calls, added) = one_second_commands(&emulator, 1, &mut run_one).await;
        report(
            "1 s command, first in a session: API calls",
            format!("{calls:.1}"),
            "",
        );
        report(
            "1 s command, first in a session: latency added",
            format!("{:.0} ms", added.0),
            "",
        );
        one_second_commands(&emulator, 2, &mut run_one).await;
        let (calls, added) = one_second_commands(&emulator, 10, &mut run_one).await;
        report(
            "1 s command, repeated: API calls per command",
            format!("{calls:.1}"),
            "≤ 5",
        );
        report(
            "1 s command, repeated: latency added, p50",
            format!("{:.0} ms", added.0),
            "≤ 50 ms",
        );
        report(
            "1 s command, repeated: latency added, p90",
            format!("{:.0} ms", added.1),
            "",
        );
        let _ = fresh.close().await;
        let (calls, added) = one_second_commands(&emulator, 10, async || {
            native_run(&sdk, command, Polling::FIXED_1S).await
        })
        .await;
        report(
            "1 s command, polled every 1 s (train-awsssm): API calls",
            format!("{calls:.1}"),
            "",
        );
        report(
            "1 s command, polled every 1 s (train-awsssm): added, p50",
            format!("{:.0} ms", added.0),
            "",
        );

        let data: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let remote = tempfile::tempdir().expect("temporary directory");
        let path = remote.path().join("upload.bin");
        let start = Instant::now();
        session
            .upload(path.to_str().expect("utf-8 path"), &data, None)
            .await
            .expect("upload");
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(std::fs::read(&path).expect("uploaded file"), data);
        report(
            "upload 1 MiB, throughput",
            format!("{:.0} KiB/s", 1024.0 / secs),
            "",
        );
        let _ = session.close().await;
    });
}

/// Run as the emulator's own process, so that its CPU is not counted.
fn serve_emulator() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let config = Config {
            faults: Faults {
                agent_latency_ms: ssm_emulator::LatencyRange::fixed(1),
                ..Faults::default()
            },
            ..Config::default()
        };
        let emulator = Emulator::start(config).await.expect("the emulator starts");
        println!("{}", emulator.endpoint_url());
        std::io::stdout().flush().expect("stdout");
        // Serve until the benchmark closes our stdin.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0; 1])).await;
        emulator.shutdown().await;
    });
}

struct EmulatorProcess {
    child: Child,
    url: String,
}

impl EmulatorProcess {
    fn start() -> EmulatorProcess {
        let exe = std::env::current_exe().expect("the bench has a path");
        let mut child = Command::new(exe)
            .arg("--emulator")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the emulator process starts");
        let stdout = child.stdout.take().expect("piped");
        let mut url = String::new();
        BufReader::new(stdout)
            .read_line(&mut url)
            .expect("the emulator's address");
        EmulatorProcess {
            child,
            url: url.trim().to_string(),
        }
    }

    /// Total API calls the emulator has answered, from its admin endpoint.
    fn calls(&self) -> u64 {
        let addr = self.url.trim_start_matches("http://");
        let mut sock = TcpStream::connect(addr).expect("the emulator answers");
        write!(
            sock,
            "GET /_emulator/calls HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut reply = String::new();
        sock.read_to_string(&mut reply).expect("reply");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let counts: serde_json::Value = serde_json::from_str(body).expect("JSON call counts");
        counts
            .as_object()
            .map(|m| m.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0)
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn credentials() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        None,
        None,
        "bench",
    )
}

async fn open(runtime: &Arc<Runtime>, endpoint: &str) -> Session {
    let request = Request {
        url: format!("awsssm://{INSTANCE}/?region=us-east-1&endpoint={endpoint}"),
        aws_credentials: Some(SharedCredentialsProvider::new(credentials())),
        ..Request::default()
    };
    let (_, session) = connect::connect(runtime, &request, None)
        .await
        .expect("the awsssm session opens");
    session
}

async fn sdk_client(endpoint: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// How the native client polls.
#[derive(Clone, Copy)]
struct Polling {
    first: Duration,
    factor: f64,
    max: Duration,
}

impl Polling {
    /// The transport's defaults: first poll soon, then backing off.
    const ADAPTIVE: Polling = Polling {
        first: Duration::from_millis(100),
        factor: 1.5,
        max: Duration::from_millis(2000),
    };
    /// train-awsssm's fixed one-second polling.
    const FIXED_1S: Polling = Polling {
        first: Duration::from_secs(1),
        factor: 1.0,
        max: Duration::from_secs(1),
    };
}

/// SendCommand, then GetCommandInvocation until the command ends; stdout.
async fn native_run(client: &aws_sdk_ssm::Client, command: &str, polling: Polling) -> Vec<u8> {
    let sent = client
        .send_command()
        .instance_ids(INSTANCE)
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec![command.to_string()])
        .send()
        .await
        .expect("SendCommand");
    let id = sent
        .command()
        .and_then(|c| c.command_id())
        .expect("a command id")
        .to_string();
    let mut wait = polling.first;
    loop {
        tokio::time::sleep(wait).await;
        wait = wait.mul_f64(polling.factor).min(polling.max);
        match client
            .get_command_invocation()
            .command_id(&id)
            .instance_id(INSTANCE)
            .send()
            .await
        {
            Ok(out) => match out.status() {
                Some(
                    CommandInvocationStatus::Pending
                    | CommandInvocationStatus::InProgress
                    | CommandInvocationStatus::Delayed,
                ) => continue,
                _ => {
                    return out
                        .standard_output_content()
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec();
                }
            },
            Err(e) if e.code() == Some("InvocationDoesNotExist") => continue,
            Err(e) => panic!("GetCommandInvocation: {e}"),
        }
    }
}

/// Process CPU time (user and system) spent per call of `f`, in seconds.
async fn cpu_per_command(mut f: impl AsyncFnMut()) -> f64 {
    let before = process_cpu();
    for _ in 0..COMMANDS {
        f().await;
    }
    (process_cpu() - before).as_secs_f64() / f64::from(COMMANDS)
}

/// User plus system CPU time of this process so far, from `/proc/self/stat`
/// (in clock ticks of 10 ms: the runs are long enough for that).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Run `runs` commands that print the time they end; API calls per command
/// and the p50 and p90 latency from their end to the client's return, in ms.
async fn one_second_commands(
    emulator: &EmulatorProcess,
    runs: u32,
    mut f: impl AsyncFnMut() -> Vec<u8>,
) -> (f64, (f64, f64)) {
    let calls_before = emulator.calls();
    let mut added = Vec::new();
    for _ in 0..runs {
        let stdout = f().await;
        let returned = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        let ended: u128 = String::from_utf8_lossy(&stdout)
            .trim()
            .parse()
            .expect("the command prints its end time");
        added.push((returned.as_nanos().saturating_sub(ended)) as f64 / 1e6);
    }
    let calls = (emulator.calls() - calls_before) as f64 / f64::from(runs);
    added.sort_by(f64::total_cmp);
    (calls, (added[added.len() / 2], added[added.len() * 9 / 10]))
}

fn report(name: &str, measured: String, target: &str) {
    println!("{name:<58} {measured:>12} {target:>10}");
}
