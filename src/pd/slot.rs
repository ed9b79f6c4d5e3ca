//! The read/write wait slot of a poll descriptor (to be written).
