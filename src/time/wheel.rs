//! The timer wheel (to be written).
