//! Loom model (to be written).
