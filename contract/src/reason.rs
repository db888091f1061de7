//! Why a run failed: a typed [`Reason`] (written as its PascalCase string) and the
//! [`RunError`] recorded in `status.json`, the journal and the Events.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident, permanent: $permanent:literal, remedy: $remedy:expr; )*) => {
        /// Why a run (or a connection in it) failed. On the wire it is the variant's name;
        /// a reason this version does not know (written by another version) is kept as
        /// [`Reason::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
            /// A reason of another version, as written.
            Other(String),
        }

        impl Reason {
            /// Every known reason.
            pub const KNOWN: &[Reason] = &[$( Reason::$variant, )*];

            /// The name written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Reason::$variant => stringify!($variant), )*
                    Reason::Other(s) => s,
                }
            }

            /// Whether no retry with the same input can succeed: the request must change (or
            /// a new Helm revision asks again). Every other reason (API errors, missing
            /// namespaces or workloads, RBAC) is retried with backoff.
            pub fn is_permanent(&self) -> bool {
                match self {
                    $( Reason::$variant => $permanent, )*
                    Reason::Other(_) => false,
                }
            }

            /// What to do about a failure of this reason in general; a failure may carry a
            /// remedy more precise for its object.
            pub fn remedy(&self) -> &'static str {
                match self {
                    $( Reason::$variant => $remedy, )*
                    Reason::Other(_) => "see the message; sc-agent runs the change again",
                }
            }
        }

        impl From<&str> for Reason {
            fn from(s: &str) -> Reason {
                match s {
                    $( stringify!($variant) => Reason::$variant, )*
                    other => Reason::Other(other.to_string()),
                }
            }
        }
    };
}

reasons! {
    /// A connection's request does not validate.
    InvalidRequest, permanent: true, remedy: "fix the connection's values and upgrade the release";
    /// The requests as a whole are unusable (not JSON, a connection in two shards, ...).
    InvalidRequests, permanent: true, remedy: "fix the chart values and upgrade the release";
    /// The API server rejected an object as invalid.
    Invalid, permanent: true, remedy: "fix the connection's values so the object is valid, then upgrade the release";
    /// An object of the same name exists and is not managed by sc-extension.
    NotManaged, permanent: true, remedy: "delete it or rename the connection";
    /// An object of the same name belongs to another connection.
    OwnedByAnotherConnection, permanent: true, remedy: "rename one of the two connections, or delete the object if the other connection was removed";
    /// A listed workload cannot take the patch.
    WorkloadNotPatchable, permanent: true, remedy: "fix the workload or remove it from the connection's workloads";
    /// The API server refused access.
    Forbidden, permanent: false, remedy: "grant the sc-job ServiceAccount access to that namespace (chart value rbac.namespaces lists the namespaces sc-job may write to; leave it empty for all)";
    /// The API server answered with an error.
    ApiError, permanent: false, remedy: "check the API server's health; sc-agent runs the job again";
    /// The API server could not be reached.
    ApiUnavailable, permanent: false, remedy: "check that the API server is reachable; sc-agent runs the job again";
    /// A request object or the change set cannot be read.
    Unreadable, permanent: false, remedy: "recreate it with helm upgrade (the chart renders it)";
    /// A shard of the requests is missing or of another revision.
    RequestsIncomplete, permanent: false, remedy: "an upgrade may still be writing them: sc-agent runs the change again once every shard is there; if it stays, upgrade the release again";
    /// The request ConfigMap does not exist.
    RequestsNotFound, permanent: false, remedy: "install or upgrade the sc-extension release (its chart renders the requests), or pass --requests";
    /// The change set ConfigMap does not exist.
    ChangeSetNotFound, permanent: false, remedy: "sc-agent writes it before it creates the job: let sc-agent run the job, or pass --changeset and --namespace";
    /// The change set does not parse.
    InvalidChangeSet, permanent: false, remedy: "delete the job and the change set: sc-agent writes a new one";
    /// sc-job has no client configuration.
    NoClient, permanent: false, remedy: "run sc-job in a pod with a service account token, or set KUBECONFIG";
    /// The change set names a connection the requests no longer have.
    NotRequested, permanent: false, remedy: "nothing to do if it was removed: sc-agent schedules its removal in the next change set";
    /// The connection's namespace does not exist.
    NamespaceNotFound, permanent: false, remedy: "create the namespace or set the connection's namespace to an existing one (sc-job never creates namespaces)";
    /// A listed workload does not exist.
    WorkloadNotFound, permanent: false, remedy: "create the workload first or remove it from the connection's workloads";
    /// The Secrets Store CSI driver is not installed.
    SecretProviderClassNotServed, permanent: false, remedy: "enable the Azure Key Vault Secrets Provider add-on (az aks enable-addons --addons azure-keyvault-secrets-provider, or the Arc extension Microsoft.AzureKeyVaultSecretsProvider), then run the change again";
    /// Recording the result kept conflicting with other writers.
    Conflict, permanent: false, remedy: "run the change again";
    /// Another writer keeps changing a connection's objects back after repairs (written by
    /// sc-agent in `drift.json`).
    Contested, permanent: true, remedy: "stop the other writer (the message names its field manager), or set the connection's driftPolicy to Report; then run `sc-agent reapply <name>`";
    /// The Job failed before recording a result (written by sc-agent).
    JobFailed, permanent: false, remedy: "see `kubectl logs job/sc-job -n <namespace>`; the agent retries transient failures";
}

impl From<String> for Reason {
    fn from(s: String) -> Reason {
        match Reason::from(s.as_str()) {
            Reason::Other(_) => Reason::Other(s),
            known => known,
        }
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        match r {
            Reason::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl Default for Reason {
    /// The reason of an error document without one: an empty [`Reason::Other`].
    fn default() -> Reason {
        Reason::Other(String::new())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The error of a run, as sc-job records it (and sc-agent for a Job that failed before
/// recording): what failed, on which object or key, and what to do (lower-case, no trailing
/// period). Never carries a secret value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunError {
    /// Why, as a reason.
    #[serde(default)]
    pub reason: Reason,
    /// What failed, on which object or key.
    #[serde(default)]
    pub message: String,
    /// What to do.
    #[serde(default)]
    pub remedy: String,
}

impl RunError {
    /// An error with `reason`, `message` and a `remedy` precise for its object.
    pub fn new(reason: Reason, message: impl Into<String>, remedy: impl Into<String>) -> Self {
        RunError {
            reason,
            message: message.into(),
            remedy: remedy.into(),
        }
    }

    /// An error with `reason`, `message` and the reason's general remedy.
    pub fn of(reason: Reason, message: impl Into<String>) -> Self {
        let remedy = reason.remedy();
        RunError::new(reason, message, remedy)
    }

    /// Whether a retry with the same input cannot succeed.
    pub fn is_permanent(&self) -> bool {
        self.reason.is_permanent()
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.message, self.remedy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_and_write_their_names() {
        for r in Reason::KNOWN {
            let text = serde_json::to_string(r).unwrap();
            assert_eq!(text, format!("\"{}\"", r.as_str()));
            assert_eq!(&serde_json::from_str::<Reason>(&text).unwrap(), r);
            assert!(!r.remedy().is_empty() && !r.remedy().ends_with('.'), "{r}");
        }
        // A reason of another version parses and is written back as it was.
        let other: Reason = serde_json::from_str("\"QuotaExceeded\"").unwrap();
        assert_eq!(other, Reason::Other("QuotaExceeded".into()));
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"QuotaExceeded\"");
        assert!(!other.is_permanent());
    }

    #[test]
    fn the_permanent_reasons_are_those_the_docs_list() {
        let permanent: Vec<&str> = Reason::KNOWN
            .iter()
            .filter(|r| r.is_permanent())
            .map(Reason::as_str)
            .collect();
        assert_eq!(
            permanent,
            [
                "InvalidRequest",
                "InvalidRequests",
                "Invalid",
                "NotManaged",
                "OwnedByAnotherConnection",
                "WorkloadNotPatchable",
                "Contested"
            ]
        );
    }

    #[test]
    fn errors_round_trip_and_old_forms_parse() {
        let e = RunError::of(Reason::NotManaged, "secret a/b exists");
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"reason":"NotManaged","message":"secret a/b exists","remedy":"delete it or rename the connection"}"#
        );
        assert_eq!(serde_json::from_str::<RunError>(&text).unwrap(), e);
        assert_eq!(
            e.to_string(),
            "secret a/b exists; delete it or rename the connection"
        );
        let partial: RunError = serde_json::from_str(r#"{"message": "m"}"#).unwrap();
        assert_eq!(partial.reason, "");
        assert!(!partial.is_permanent());
    }
}
