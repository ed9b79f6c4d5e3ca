//! The local run queue (to be written).
