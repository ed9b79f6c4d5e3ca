//! The blocking pool (to be written).
