//! `railbox inspect`: what a transport component asks of the host.
