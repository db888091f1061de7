//! The failure of an API call, as a [`RunError`] with its reason, message and remedy.

use sc_contract::{ObjectKey, Reason, RunError};

/// An API call on `object` (`verb` such as `get`, `apply`, `patch`) that failed.
pub fn api_error(verb: &str, object: &ObjectKey, err: &kube::Error) -> RunError {
    match err {
        kube::Error::Api(s) if s.code == 403 => RunError::of(
            Reason::Forbidden,
            format!("{verb} {object} was forbidden: {}", s.message),
        ),
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => RunError::of(
            Reason::Invalid,
            format!(
                "{verb} {object} was rejected by the API server: {}",
                s.message
            ),
        ),
        kube::Error::Api(s) => RunError::of(
            Reason::ApiError,
            format!("{verb} {object} failed: {} ({})", s.message, s.code),
        ),
        other => RunError::of(
            Reason::ApiUnavailable,
            format!("{verb} {object} failed: {other}"),
        ),
    }
}
