//! The connection model of sc-extension: the request schema, the catalog of documented
//! configuration names, object names, validation, rendering and content hashing. No I/O.
//!
//! The usual flow: merge the values files ([`merge_values`]), take the `connections`
//! subtree ([`connections_subtree`]), validate it ([`validate_connections`]) into a
//! [`RequestSet`], then render each connection's objects ([`Connection::desired`]) and
//! patch workloads ([`workload_patch_ops`]).

pub mod catalog;
pub mod error;
pub mod guard;
pub mod names;
mod par;
pub mod patch;
pub mod render;
pub mod request;
pub mod resolve;
pub mod secret;
pub mod spellings;
pub mod template;
pub mod types;
pub mod values;

pub use catalog::{Catalog, KeySpec, ParameterSpec, catalog};
pub use error::{FieldError, ValidationErrors};
pub use guard::NamespaceGuard;
pub use patch::{
    Ejection, Injected, PatchError, ServiceAccountChange, eject_ops, inject_ops, workload_patch_ops,
};
pub use render::{CsiVolume, DesiredObjects, WorkloadPatch};
pub use request::{ConnectionRequest, ConnectionSpec, KeyVaultObject};
pub use resolve::{
    Connection, ConnectionCheck, KeyValue, RequestSet, ResolvedKey, check_connections,
    check_connections_keyed, check_connections_owned, cross_signature, path_owner,
    recheck_connection, validate_connections, validate_connections_keyed,
};
pub use secret::SecretString;
pub use spellings::{AcceptedSpellings, Spellings, accepted_spellings, schema_enum};
pub use template::Template;
pub use types::{AuthType, ClientType, DeletionPolicy, DriftPolicy, WorkloadKind, WorkloadRef};
pub use values::{connections_subtree, merge_values, parse_yaml, validate_values_yaml};
