//! Instrumentation for users of `tracing` (feature `tracing`).
//!
//! What a subscriber sees, all under targets beginning with `netpoll::`:
//!
//! | what | kind | target | level | fields |
//! |------|------|--------|-------|--------|
//! | a task | span `task`, created at spawn, entered on every poll | `netpoll::task` | TRACE | `task.id`, `loc.file`, `loc.line` |
//! | a blocking job | span `blocking`, entered while it runs | `netpoll::task` | TRACE | `task.id`, `loc.file`, `loc.line` |
//! | a wait in the OS poller | event `poller wait` | `netpoll::poller` | TRACE | `blocking`, `timeout_ms`, `events` |
//! | the monitor hands off a stuck worker's queue | event | `netpoll::sysmon` | DEBUG | `stuck_ns` |
//!
//! Spans and events go through `tracing`'s macros, so with no subscriber (or one that filters
//! them out) each costs a check of the call site's cached interest. Without the feature none of
//! this is compiled: the call sites are `#[cfg(feature = "tracing")]`.

use std::panic::Location;

use crate::sched::task::Id;

/// The span of a task, created when it is spawned; the task's future is wrapped in it
/// (`tracing::Instrument`), so the span is entered for each poll and closes when the task is
/// dropped.
pub(crate) fn task_span(id: Id, location: &'static Location<'static>) -> tracing::Span {
    tracing::trace_span!(
        target: "netpoll::task",
        "task",
        task.id = id.as_u64(),
        loc.file = location.file(),
        loc.line = location.line(),
    )
}

/// The span of a `spawn_blocking` job, entered while the closure runs.
pub(crate) fn blocking_span(id: Id, location: &'static Location<'static>) -> tracing::Span {
    tracing::trace_span!(
        target: "netpoll::task",
        "blocking",
        task.id = id.as_u64(),
        loc.file = location.file(),
        loc.line = location.line(),
    )
}
