//! Layer 2: poll descriptors.

pub(crate) mod slot;
