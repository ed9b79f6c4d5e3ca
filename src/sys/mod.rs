//! Layer 1: the OS poller (to be written).
