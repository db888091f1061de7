//! Why a connection (or the whole run) failed: a machine-readable reason, what failed on which
//! object, and what to do.

use crate::log::ObjRef;
use serde::Serialize;
use std::fmt;

/// A failure with its reason, message and remedy (lower-case, no trailing period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// A CamelCase reason such as `NotManaged` or `NamespaceNotFound`.
    pub reason: String,
    /// What failed, naming the object or key.
    pub message: String,
    /// What to do about it.
    pub remedy: String,
}

impl Failure {
    /// A failure with `reason`, `message` and `remedy`.
    pub fn new(reason: &str, message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Failure {
            reason: reason.to_string(),
            message: message.into(),
            remedy: remedy.into(),
        }
    }

    /// An API call on `object` (`verb` such as `get`, `apply`, `patch`) that failed.
    pub fn api(verb: &str, object: &ObjRef, err: &kube::Error) -> Self {
        match err {
            kube::Error::Api(s) if s.code == 403 => Failure::new(
                "Forbidden",
                format!("{verb} {object} was forbidden: {}", s.message),
                "grant the sc-job ServiceAccount access to that namespace (chart value rbac.namespaces lists the namespaces sc-job may write to; leave it empty for all)",
            ),
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => Failure::new(
                "Invalid",
                format!(
                    "{verb} {object} was rejected by the API server: {}",
                    s.message
                ),
                "fix the connection's values so the object is valid, then upgrade the release",
            ),
            kube::Error::Api(s) => Failure::new(
                "ApiError",
                format!("{verb} {object} failed: {} ({})", s.message, s.code),
                "check the API server's health; sc-agent runs the job again",
            ),
            other => Failure::new(
                "ApiUnavailable",
                format!("{verb} {object} failed: {other}"),
                "check that the API server is reachable; sc-agent runs the job again",
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.message, self.remedy)
    }
}
