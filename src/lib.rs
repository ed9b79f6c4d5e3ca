//! netpoll: Go's network poller and scheduler, rebuilt in Rust.

#![deny(unsafe_op_in_unsafe_fn)]
// Temporary while the layers are assembled: modules land before their users.
#![allow(dead_code)]

mod loom;
mod pd;
mod sched;
mod sys;
mod time;

#[cfg(test)]
mod tests;
