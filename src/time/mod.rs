//! Layer 4: timers.

pub(crate) mod wheel;
