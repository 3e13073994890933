//! railbox's end-to-end tests, in one binary: the CLI, the hostile-guest
//! suite, the compiled-code cache and the capability policy.

mod cache;
mod cli;
mod hostile;
mod support;
