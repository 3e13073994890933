//! Benchmark of the serial transport's file upload over a line limited to
//! 115,200 baud, run with `cargo bench -p railbox --bench serial`.
//!
//! The console is the qemu VM of the end-to-end tests, reached through the
//! fixture's relay, which passes at most 11,520 bytes a second each way (8N1
//! framing). The figure is payload bytes per second as a fraction of that
//! raw rate: base64 alone cannot pass 0.75 of it, so random data must come
//! close to that, and compressible data must beat 1.0. It also times a
//! command's round trip on that line.

use std::time::{Duration, Instant};

use railbox::connect::{self, Request};
use railbox::files::hex_sha256;
use railbox::{Runtime, RuntimeConfig};
use railbox_tests::noise;
use railbox_tests::vm::{LINE_115200, ROOT_PASSWORD, SerialVm};

const SIZE: usize = 1 << 20;

fn main() {
    let vm = SerialVm::boot();
    let addr = vm.tcp(Some(LINE_115200));
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
        let request = Request {
            url: format!("serial+tcp://root:{ROOT_PASSWORD}@{addr}/"),
            ..Request::default()
        };
        let started = Instant::now();
        let (_, mut session) = connect::connect(&runtime, &request, None)
            .await
            .expect("the console opens");
        let login = started.elapsed();
        println!(
            "{:<40} {:>22} {:>8}",
            "benchmark (115,200 baud, 11,520 B/s)", "measured", "target"
        );
        println!(
            "{:<40} {:>20.2} s {:>8}",
            "log in and prepare the shell",
            login.as_secs_f64(),
            "none"
        );

        // Command round trips: train-serial waits for 750 ms of silence
        // after every command; markers end a command when it ends.
        let mut times = Vec::new();
        for _ in 0..30 {
            let started = Instant::now();
            let out = session
                .run("true", Duration::from_secs(30))
                .await
                .expect("run");
            assert_eq!(out.exit_status, 0);
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "{:<40} {:>22} {:>8}",
            "run `true`, p50 / p90",
            format!(
                "{:.0} / {:.0} ms",
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() * 9 / 10].as_secs_f64() * 1e3
            ),
            "none"
        );

        for (name, data, target) in [
            (
                "upload 1 MiB of random bytes",
                noise(SIZE, 0x9e37_79b9_7f4a_7c15),
                "≥ 0.70",
            ),
            ("upload 1 MiB of text", text(SIZE), "> 1.00"),
        ] {
            let started = Instant::now();
            session
                .upload("/tmp/bench", &data, None)
                .await
                .expect("upload");
            let took = started.elapsed();
            let check = session
                .run("sha256sum /tmp/bench", Duration::from_secs(60))
                .await
                .expect("sha256sum");
            let sum = String::from_utf8_lossy(&check.stdout).into_owned();
            assert!(
                sum.starts_with(&hex_sha256(&data)),
                "the upload arrived intact"
            );
            let rate = SIZE as f64 / took.as_secs_f64();
            println!(
                "{:<40} {:>22} {:>8}",
                name,
                format!("{:.3} ({:.0} B/s)", rate / LINE_115200 as f64, rate),
                target
            );
        }
        session.close().await.expect("close");
    });
}

/// Text shaped like a log file: repeated structure, varying numbers.
fn text(n: usize) -> Vec<u8> {
    let mut out = String::with_capacity(n + 128);
    let mut i = 0u64;
    while out.len() < n {
        out.push_str(&format!(
            "2026-12-03T10:{:02}:{:02}Z host-{:03} service[{}]: request {} served in {} ms\n",
            (i / 60) % 60,
            i % 60,
            i % 17,
            1000 + i % 7,
            i,
            (i * 37) % 250
        ));
        i += 1;
    }
    out.truncate(n);
    out.into_bytes()
}
