//! The process kubelet: runs every pod's containers as local processes.

pub mod env;
pub mod image;
pub mod logs;
pub mod process;
pub mod status;
