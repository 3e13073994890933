//! The linker: every import the host provides, built once per engine.
//!
//! WASI is linked without sockets and with nothing granted (no directories,
//! environment, arguments or stdin), because Rust guests import parts of it
//! even when they never use them. A transport that imports anything else,
//! such as `wasi:sockets`, fails to load with the import named.

use wasmtime::Engine;
use wasmtime::component::{HasData, HasSelf, Linker};
use wasmtime_wasi::WasiView as _;
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
use wasmtime_wasi::random::WasiRandom;

use crate::session::SessionState;

/// Interfaces the host provides, by package and name, without version.
pub const PROVIDED: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "railbox:transport/types",
    "railbox:transport/logging",
    "railbox:transport/aws",
    "railbox:transport/byte-stream",
];

/// Build the linker with WASI (no sockets), `wasi:http` and railbox's
/// capabilities.
pub fn build(engine: &Engine) -> wasmtime::Result<Linker<SessionState>> {
    let mut l = Linker::new(engine);
    add_wasi(&mut l)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
    crate::bindings::Transport::add_to_linker::<_, HasSelf<_>>(&mut l, |s| s)?;
    Ok(l)
}

/// Gives the `wasi:io` bindings the session's resource table.
struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

fn add_wasi(l: &mut Linker<SessionState>) -> wasmtime::Result<()> {
    type T = SessionState;
    use wasmtime_wasi_io::bindings::wasi::io;
    io::error::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, HasTable>(l, |t| t.ctx().table)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    Ok(())
}
