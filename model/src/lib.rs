//! The connection model of sc-extension: the request schema, the catalog of documented
//! configuration names, object names, validation, rendering and content hashing. No I/O.

pub mod catalog;
pub mod secret;
pub mod template;
pub mod types;

pub use catalog::{Catalog, KeySpec, ParameterSpec, catalog};
pub use secret::SecretString;
pub use template::Template;
pub use types::{AuthType, ClientType, DeletionPolicy, WorkloadKind, WorkloadRef};
