//! kubesim: an embedded Kubernetes API server, with the controllers and the process kubelet
//! that sc-extension relies on. It is the cluster of `make demo`, of the benchmark and of the
//! project's tests; everything lives in memory.
//!
//! Layers, bottom up (a module uses only the layers before it; the README's layout table lists
//! them, and a test fails on an import loop or a use of a later layer):
//! - leaves: [`time`] (timestamps), [`cron`] (CronJob schedules), [`store`] (versioned objects, atomic writes, watch
//!   history), [`selector`] (label/field selectors), [`patch`] (JSON, merge, strategic merge,
//!   server-side apply), [`proto`] (protobuf request bodies).
//! - [`resources`]: the served types and discovery; [`error`]: the API's error type;
//!   [`rbac`] (authorization) and [`table`] (`kubectl get` columns); [`strict`] and
//!   [`admission`]: field validation, defaulting and validation.
//! - [`cluster`]: the in-process API every writer uses (HTTP layer, controllers, kubelet),
//!   split by concern (authentication, reads and writes, patches, subresources).
//! - [`audit`] and [`reviews`]; [`controllers`]; [`kubelet`] (pods as local processes).
//! - [`server`]: the HTTP layer, wrapped by [`faults`] (fault injection, admin endpoint);
//!   [`Kubesim`]: a running instance; [`testing`]: scenario helpers.

pub mod admission;
pub mod audit;
pub mod cluster;
pub mod controllers;
pub mod cron;
pub mod error;
pub mod faults;
mod instance;
pub mod kubelet;
#[cfg(test)]
mod module_graph;
pub mod negotiate;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod rbac;
pub mod resources;
pub mod reviews;
pub mod selector;
pub mod server;
pub mod store;
pub mod streaming;
pub mod strict;
pub mod structural;
pub mod table;
pub mod testing;
pub mod time;

pub use instance::{Kubesim, Options, kubeconfig_yaml};
