//! The sc-agent commands, one module each.

pub mod catalog;
pub mod ops;
pub mod plan;
pub mod run;
pub mod validate;
pub mod wait;

/// Exit code of a command given invalid input (bad values, unknown names).
pub const EXIT_INVALID: u8 = 2;
