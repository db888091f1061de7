//! kubesim: an embedded Kubernetes API server, with the controllers and the process kubelet
//! that sc-extension relies on, for tests and demos. Everything lives in memory.
//!
//! Layers, bottom up:
//! - [`store`]: versioned objects, atomic writes, watch history.
//! - pure helpers: [`selector`] (label/field selectors), [`patch`] (JSON, merge,
//!   strategic merge, server-side apply), [`proto`] (protobuf request bodies),
//!   [`table`] (`kubectl get` columns), [`rbac`] (authorization).
//! - [`resources`]: the served types and discovery; [`admission`] and [`strict`]: defaulting
//!   and validation.
//! - [`cluster`]: the in-process API every writer uses (HTTP layer, controllers, kubelet).
//! - [`server`]: the HTTP layer, wrapped by [`faults`] (fault injection, admin endpoint);
//!   [`Kubesim`]: a running instance; [`testing`]: scenario helpers.

pub mod admission;
pub mod audit;
pub mod cluster;
pub mod controllers;
pub mod error;
pub mod faults;
mod instance;
pub mod kubelet;
#[cfg(test)]
mod module_graph;
pub mod patch;
pub mod proto;
pub mod rbac;
pub mod resources;
pub mod reviews;
pub mod selector;
pub mod server;
pub mod store;
pub mod strict;
pub mod table;
pub mod testing;
pub mod time;

pub use instance::{Kubesim, Options, kubeconfig_yaml};
