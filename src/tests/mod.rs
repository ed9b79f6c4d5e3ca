//! Loom models of the lock-free protocols (`RUSTFLAGS="--cfg loom"`), one file per protocol.

#[cfg(loom)]
mod loom_cache;
#[cfg(loom)]
mod loom_deadline;
#[cfg(loom)]
mod loom_fd_mutex;
#[cfg(loom)]
mod loom_idle;
#[cfg(loom)]
mod loom_queue;
#[cfg(loom)]
mod loom_slot;
#[cfg(loom)]
mod loom_task;
