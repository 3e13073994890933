//! Unit tests against a scripted console.
