//! Layer 3: the scheduler.

pub(crate) mod blocking;
pub(crate) mod queue;
pub(crate) mod task;
