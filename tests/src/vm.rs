//! The serial-console test peer: Debian's kernel and a busybox userland
//! booted in qemu without KVM, with its console on ttyS0.
//!
//! The images are made from Debian packages on first use and kept under the
//! workspace's `target/serial-vm/`: the kernel from `linux-image-amd64`,
//! fetched with `apt-get download` and unpacked (not installed), and an
//! initramfs holding the host's static busybox, a getty on ttyS0 and a root
//! password. qemu exposes the console on a unix socket; tests reach it
//! through a loopback TCP relay (optionally limited to a serial line's
//! rate) or through a pty that socat bridges to it.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The root password of the test VM.
pub const ROOT_PASSWORD: &str = "railbox-root-pw";

/// A second, unprivileged user and its password.
pub const GUEST_USER: &str = "guest";
/// The guest user's password.
pub const GUEST_PASSWORD: &str = "guest pw 'quoted' $x";

/// The banner the console prints above its login prompt.
pub const BANNER: &str = "Welcome to the railbox test console";

/// Bytes per second of a 115,200-baud line with 8N1 framing.
pub const LINE_115200: u64 = 11_520;

/// Serialises image building between the tests of one process.
static BUILD: Mutex<()> = Mutex::new(());

/// Kernel and initramfs, ready to boot.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Where the images are kept.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .join("target")
        .join("serial-vm")
}

/// Make the images if they are not cached yet.
pub fn images() -> Images {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // Bump when what build_initrd writes changes, so caches are remade.
    let dir = cache_dir().join("v1");
    let images = Images {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.gz"),
    };
    if images.kernel.exists() && images.initrd.exists() {
        return images;
    }
    fs::create_dir_all(cache_dir()).expect("creating the image cache");
    let work = tempfile::tempdir_in(cache_dir()).expect("a build directory");
    fetch_kernel(work.path());
    build_initrd(work.path());
    // Another process may have finished first; either result is good.
    let _ = fs::rename(work.path().join("out"), &dir);
    assert!(images.kernel.exists(), "the kernel was not made");
    images
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "building the serial VM failed at `{script}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fetch_kernel(work: &Path) {
    fs::create_dir_all(work.join("out")).expect("out dir");
    download(work, "linux-image-amd64");
    let depends = sh(work, "dpkg-deb -f linux-image-amd64_*.deb Depends");
    let package = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("linux-image-amd64 depends on no kernel: {depends:?}"))
        .to_string();
    download(work, &package);
    sh(
        work,
        &format!(
            "dpkg-deb --fsys-tarfile {package}_*.deb | tar -x --wildcards './boot/vmlinuz-*'; \
             mv boot/vmlinuz-* out/vmlinuz"
        ),
    );
}

/// `apt-get download`, tried three times: a mirror can fail for a moment.
fn download(work: &Path, package: &str) {
    sh(
        work,
        &format!(
            "for i in 1 2 3; do apt-get download -q {package} 2>&1 && exit 0; sleep 5; done; \
             echo 'apt-get download {package} failed; are the package lists current (apt-get update)?' >&2; \
             exit 1"
        ),
    );
}

fn build_initrd(work: &Path) {
    let root = work.join("root");
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/guest",
    ] {
        fs::create_dir_all(root.join(dir)).expect("initramfs dir");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed");
    fs::copy(busybox, root.join("bin/busybox")).expect("copying busybox");
    let hash = |password: &str| {
        let out = Command::new(busybox)
            .args(["mkpasswd", "-m", "sha512", password])
            .output()
            .expect("busybox mkpasswd");
        assert!(out.status.success(), "busybox mkpasswd failed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let files: &[(&str, String, u32)] = &[
        (
            "init",
            "#!/bin/busybox sh\n\
             /bin/busybox --install -s\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t devtmpfs dev /dev\n\
             mount -t tmpfs tmp /tmp\n\
             chmod 1777 /tmp\n\
             chown guest:guest /home/guest\n\
             hostname railbox-vm\n\
             exec /sbin/init\n"
                .into(),
            0o755,
        ),
        (
            "etc/inittab",
            "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n".into(),
            0o644,
        ),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nguest:x:1000:1000:guest:/home/guest:/bin/sh\n".into(),
            0o644,
        ),
        (
            "etc/shadow",
            format!(
                "root:{}:19000:0:99999:7:::\nguest:{}:19000:0:99999:7:::\n",
                hash(ROOT_PASSWORD),
                hash(GUEST_PASSWORD)
            ),
            0o600,
        ),
        ("etc/group", "root:x:0:\nguest:x:1000:\n".into(), 0o644),
        ("etc/issue", format!("{BANNER}\n\n"), 0o644),
        (
            "etc/motd",
            "railbox test VM: busybox on Debian's kernel\n".into(),
            0o644,
        ),
    ];
    for (path, text, mode) in files {
        let file = root.join(path);
        fs::write(&file, text).expect("initramfs file");
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .expect("chmod");
    }
    sh(
        &root,
        "find . | cpio -o -H newc --quiet --owner=0:0 | gzip -1 > ../out/initrd.gz",
    );
}

/// A booted VM. It is killed when dropped.
pub struct SerialVm {
    child: Child,
    dir: tempfile::TempDir,
}

impl SerialVm {
    /// Boot a VM; the console may still be starting when this returns.
    pub fn boot() -> SerialVm {
        let images = images();
        let dir = tempfile::tempdir().expect("a VM directory");
        let socket = dir.path().join("console.sock");
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35,accel=tcg", "-cpu", "max", "-m", "192"])
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&images.kernel)
            .arg("-initrd")
            .arg(&images.initrd)
            .args(["-append", "console=ttyS0,115200 panic=-1 quiet"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=console,path={},server=on,wait=off",
                socket.display()
            ))
            .args(["-serial", "chardev:console"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting qemu-system-x86_64 (is qemu-system-x86 installed?)");
        let vm = SerialVm { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !vm.socket().exists() {
            assert!(Instant::now() < deadline, "qemu made no console socket");
            thread::sleep(Duration::from_millis(20));
        }
        vm
    }

    /// The console's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    /// Connect to the console directly, for a test that plays the operator.
    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(self.socket()).expect("connecting to the console")
    }

    /// A loopback TCP endpoint for the console, passing at most
    /// `bytes_per_sec` each way when given.
    pub fn tcp(&self, bytes_per_sec: Option<u64>) -> SocketAddr {
        self.relay(Line {
            rate: bytes_per_sec,
            ..Line::default()
        })
        .addr
    }

    /// A loopback TCP endpoint for the console that treats the bytes it
    /// passes as `line` says.
    pub fn relay(&self, line: Line) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let socket = self.socket();
        let damaged = Arc::new(AtomicUsize::new(0));
        let count = damaged.clone();
        thread::spawn(move || {
            let mut line = line;
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(console) = UnixStream::connect(&socket) else {
                    return;
                };
                let _ = client.set_nodelay(true);
                relay(client, console, line, &count);
                // Damage only the first connection.
                line.corrupt_up = None;
                line.corrupt_down = None;
            }
        });
        Relay { addr, damaged }
    }

    /// A pty whose other side socat bridges to the console; the returned
    /// path opens like a serial device.
    pub fn pty(&self) -> Pty {
        let link = self.dir.path().join("ttyV0");
        let child = Command::new("socat")
            .arg(format!("PTY,link={},rawer,wait-slave", link.display()))
            .arg(format!("UNIX-CONNECT:{}", self.socket().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat (is socat installed?)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.exists() {
            assert!(Instant::now() < deadline, "socat made no pty");
            thread::sleep(Duration::from_millis(10));
        }
        Pty { child, path: link }
    }

    /// Log in on the console by hand and leave the shell open, as an
    /// operator would who forgot to log out.
    pub fn login_by_hand(&self) {
        let mut con = self.connect();
        con.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut seen = Vec::new();
        let mut step = |wait_for: &str, answer: &str, seen: &mut Vec<u8>| {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let text = String::from_utf8_lossy(seen).into_owned();
                if text.trim_end().ends_with(wait_for) {
                    break;
                }
                assert!(Instant::now() < deadline, "no {wait_for:?}; saw {text:?}");
                let mut buf = [0; 4096];
                match con.read(&mut buf) {
                    Ok(0) => panic!("the console closed"),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                    Err(_) => con.write_all(b"\r").expect("write"),
                }
            }
            seen.clear();
            con.write_all(answer.as_bytes()).expect("write");
        };
        step("login:", "root\n", &mut seen);
        step("Password:", &format!("{ROOT_PASSWORD}\n"), &mut seen);
        step("#", "cd /tmp\n", &mut seen);
        thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for SerialVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a relay passes bytes: at a serial line's rate, and with one byte
/// damaged in either direction, as line noise would.
#[derive(Debug, Clone, Copy, Default)]
pub struct Line {
    /// Bytes per second each way; unlimited when `None`.
    pub rate: Option<u64>,
    /// Swap the case of the first letter at or past this offset of what the
    /// client sends.
    pub corrupt_up: Option<u64>,
    /// The same for what the console sends.
    pub corrupt_down: Option<u64>,
}

/// A running relay.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    damaged: Arc<AtomicUsize>,
}

impl Relay {
    /// How many bytes it has damaged so far.
    pub fn damaged(&self) -> usize {
        self.damaged.load(Ordering::SeqCst)
    }
}

/// A socat-made pty bridged to a VM's console. socat ends when dropped.
pub struct Pty {
    child: Child,
    /// The pty's path.
    pub path: PathBuf,
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy bytes both ways between a TCP client and the console until either
/// side closes.
fn relay(client: TcpStream, console: UnixStream, line: Line, damaged: &Arc<AtomicUsize>) {
    let (Ok(client_reader), Ok(console_reader)) = (client.try_clone(), console.try_clone()) else {
        return;
    };
    let up_damaged = damaged.clone();
    let up = thread::spawn(move || {
        pump(
            client_reader,
            console,
            line.rate,
            line.corrupt_up,
            &up_damaged,
        )
    });
    pump(
        console_reader,
        client,
        line.rate,
        line.corrupt_down,
        damaged,
    );
    let _ = up.join();
}

/// One direction of the relay. Pacing sends at most 1/100 s of the rate at
/// a time and sleeps until the line would have carried it.
fn pump(
    mut from: impl std::io::Read,
    mut to: impl Shutdown,
    bytes_per_sec: Option<u64>,
    mut corrupt_at: Option<u64>,
    damaged: &AtomicUsize,
) {
    let piece = bytes_per_sec.map_or(64 << 10, |r| (r / 100).max(1) as usize);
    let mut buf = vec![0; piece];
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut offset: u64 = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(at) = corrupt_at
            && offset + n as u64 > at
        {
            let start = at.saturating_sub(offset) as usize;
            if let Some(b) = buf[start..n].iter_mut().find(|b| b.is_ascii_alphabetic()) {
                *b ^= 0x20;
                corrupt_at = None;
                damaged.fetch_add(1, Ordering::SeqCst);
            }
        }
        offset += n as u64;
        if let Some(rate) = bytes_per_sec {
            let rate = rate as f64;
            let now = started.elapsed().as_secs_f64();
            // After a pause the line starts afresh: idle time earns no burst.
            if now > sent as f64 / rate + 0.05 {
                sent = (now * rate) as u64;
            }
            sent += n as u64;
            let on_the_line = sent as f64 / rate;
            if on_the_line > now {
                thread::sleep(Duration::from_secs_f64(on_the_line - now));
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.close();
}

/// A stream whose writing half can be shut.
trait Shutdown: std::io::Write {
    fn close(&mut self);
}

impl Shutdown for TcpStream {
    fn close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Shutdown for UnixStream {
    fn close(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}
