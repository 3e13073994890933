//! Benchmarks of the host's own overhead, run with `cargo bench -p railbox
//! --bench host`: instantiation, a call's round trip, memory per live
//! session, and a cold `railbox run` with cached code.
//!
//! Each prints its median (or total) against the target it should meet.
//! Numbers are reported in the README; no test asserts them, since timings
//! on a shared machine vary.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railbox::connect::{self, Prepared, Request};
use railbox::limits::Limits;
use railbox::session::SessionState;
use railbox::{Allocation, Policy, Runtime, RuntimeConfig, Session};
use railbox_tests::{PROBE, TINY};

const URL: &str = "probe://target/?region=us-east-1";
const PROBE_TARGET: (&str, &str) = (URL, PROBE);
const TINY_TARGET: (&str, &str) = ("tiny://target/", TINY);

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Each memory measurement runs in a fresh process of its own, so that
    // one's freed heap does not flatter the next.
    if let [flag, name] = args.as_slice()
        && flag == "--sessions-child"
    {
        let target = if name == "tiny" {
            TINY_TARGET
        } else {
            PROBE_TARGET
        };
        let cache = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        rt.block_on(live_sessions(cache.path().into(), name, target));
        return;
    }
    let filter: Option<&String> = args.iter().find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.is_none_or(|f| name.contains(f));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cache = tempfile::tempdir().expect("temporary directory");
    println!("{:<44} {:>14} {:>12}", "benchmark", "measured", "target");
    if wanted("instantiate") {
        rt.block_on(instantiate(cache.path().into()));
    }
    if wanted("round_trip") {
        rt.block_on(round_trip(cache.path().into()));
    }
    if wanted("sessions") {
        for name in ["tiny", "probe"] {
            let exe = std::env::current_exe().expect("the bench has a path");
            let status = std::process::Command::new(exe)
                .args(["--sessions-child", name])
                .status()
                .expect("the bench runs itself");
            assert!(status.success(), "measuring {name} sessions failed");
        }
    }
    if wanted("cold_run") {
        cold_run(cache.path().into());
    }
}

fn runtime(cache: PathBuf, allocation: Allocation) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        allocation,
        cache_dir: Some(cache.join("code")),
        limits: Limits::default(),
    })
    .expect("runtime")
}

/// The probe, a test transport with every capability, or tiny, the
/// smallest transport that runs commands.
async fn prepare(runtime: &Arc<Runtime>, (url, wasm): (&str, &str)) -> Prepared {
    let request = Request {
        url: url.into(),
        transports: vec![wasm.into()],
        ..Request::default()
    };
    connect::prepare(runtime, &request)
        .await
        .expect("the probe prepares")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, measured: String, target: &str) {
    println!("{name:<44} {measured:>14} {target:>12}");
}

/// Instantiating the pre-instantiated probe in a fresh store, pooling allocator.
async fn instantiate(cache: PathBuf) {
    let runtime = runtime(cache, Allocation::Pooling { sessions: 64 });
    let prepared = prepare(&runtime, TINY_TARGET).await;
    let pre = prepared.transport.pre();
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let state = SessionState::new(
            "probe",
            Arc::new(Policy::deny_all()),
            Default::default(),
            Default::default(),
            None,
        );
        let mut store = wasmtime::Store::new(runtime.engine(), state);
        store.set_epoch_deadline(1_000);
        let start = Instant::now();
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        samples.push(start.elapsed());
        std::hint::black_box(instance);
    }
    report(
        "instantiate (pooling), median",
        format!("{:.2} µs", micros(median(samples))),
        "≤ 10 µs",
    );
}

/// A run-command call that does nothing in the guest, through the session API.
async fn round_trip(cache: PathBuf) {
    let runtime = runtime(cache, Allocation::OnDemand);
    let prepared = prepare(&runtime, PROBE_TARGET).await;
    let (_, mut session) = prepared.open(&runtime, None).await.expect("open");
    for _ in 0..10_000 {
        session
            .run("exit 0", Duration::from_secs(5))
            .await
            .expect("run");
    }
    let mut samples = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let start = Instant::now();
        let out = session.run("exit 0", Duration::from_secs(5)).await;
        samples.push(start.elapsed());
        std::hint::black_box(out.expect("run"));
    }
    report(
        "no-op run-command round trip, median",
        format!("{:.2} µs", micros(median(samples))),
        "≤ 2 µs",
    );
}

/// Resident memory added by 10,000 open sessions of one transport.
async fn live_sessions(cache: PathBuf, name: &str, target: (&str, &str)) {
    const SESSIONS: u32 = 10_000;
    let runtime = runtime(cache, Allocation::Pooling { sessions: SESSIONS });
    let prepared = prepare(&runtime, target).await;
    // One session first, so that code and shared state are resident already.
    let (_, first) = prepared.clone().open(&runtime, None).await.expect("open");
    let before = resident_bytes();
    let mut sessions: Vec<Session> = Vec::with_capacity(SESSIONS as usize);
    sessions.push(first);
    for _ in 1..SESSIONS {
        let (_, session) = prepared.clone().open(&runtime, None).await.expect("open");
        sessions.push(session);
    }
    let after = resident_bytes();
    let total = after.saturating_sub(before) as f64 / f64::from(1 << 20);
    report(
        &format!("RSS of 10,000 live {name} sessions (pooling)"),
        format!("{total:.0} MiB"),
        "≤ 512 MiB",
    );
    report(
        "  per session",
        format!("{:.1} KiB", total * 1024.0 / f64::from(SESSIONS)),
        "",
    );
    drop(sessions);
}

/// `railbox run` as a fresh process with compiled code already cached: time
/// from spawning it to the transport's first host call (its log line as it
/// opens), and to the process's exit.
fn cold_run(cache: PathBuf) {
    let home = cache.join("home");
    let spawn = || {
        let mut cmd = railbox_tests::railbox(&home);
        cmd.args(["run", "--transport", PROBE, URL, "--", "exit", "0"])
            .env("RAILBOX_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let warm = spawn().output().expect("railbox runs");
    assert!(
        warm.status.success(),
        "{}",
        String::from_utf8_lossy(&warm.stderr)
    );
    let mut first_call = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..30 {
        let start = Instant::now();
        let mut child: std::process::Child = spawn().spawn().expect("railbox starts");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let seen = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("probe session opened"));
        first_call.push(start.elapsed());
        assert!(seen, "the probe logs as it opens");
        lines.for_each(drop);
        let status = child.wait().expect("railbox exits");
        whole.push(start.elapsed());
        assert!(status.success());
    }
    report(
        "cold run, cached code: to first host call",
        format!("{:.1} ms", millis(median(first_call))),
        "≤ 15 ms",
    );
    report(
        "cold run, cached code: whole process",
        format!("{:.1} ms", millis(median(whole))),
        "",
    );
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
