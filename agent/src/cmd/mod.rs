//! The sc-agent commands, one module each.

pub mod catalog;
pub mod plan;

/// Exit code of a command given invalid input (bad values, unknown names).
pub const EXIT_INVALID: u8 = 2;
