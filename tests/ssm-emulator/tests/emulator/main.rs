//! The emulator's test suite, driven through the official AWS SDK for Rust.
//!
//! Each test starts its own emulator on `127.0.0.1:0`. Waits are polls with a
//! generous deadline rather than fixed sleeps, so a loaded machine slows the
//! suite down without failing it.

mod binary;
mod commands;
mod errors;
mod faults;
mod listing;
mod support;
