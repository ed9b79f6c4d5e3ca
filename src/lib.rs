//! netpoll: Go's network poller and scheduler, rebuilt in Rust.

#![deny(unsafe_op_in_unsafe_fn)]

mod loom;
