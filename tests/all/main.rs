//! railbox's end-to-end tests, in one binary: the CLI, the hostile-guest
//! suite, the compiled-code cache, the capability policy, and the awsssm
//! transport against the SSM emulator, the serial transport against a
//! console booted in qemu.

mod awsssm;
mod cache;
mod cli;
mod generic;
mod hostile;
mod serial;
mod support;
