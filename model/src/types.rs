//! The enumerations of the request schema: auth types, client types, deletion policies and
//! workload kinds, with the spellings accepted on input.

use serde::Serialize;
use std::fmt;

/// Lower-cases `s` and removes `-`, `_`, `.` and spaces, so `service-principal`,
/// `servicePrincipal` and `SERVICE_PRINCIPAL` compare equal.
pub(crate) fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '-' | '_' | ' ' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The accepted spellings of each auth type, in their documented forms: the request
/// schema's (first), the documentation's and the aliases. [`AuthType::parse`] accepts
/// exactly these, case-insensitively and ignoring `-`, `_`, `.` and spaces.
pub(crate) const AUTH_TYPE_SPELLINGS: [(AuthType, &[&str]); 4] = [
    (
        AuthType::Secret,
        &["secret", "connection-string", "connectionString"],
    ),
    (
        AuthType::ServicePrincipal,
        &["servicePrincipal", "service-principal", "sp"],
    ),
    (
        AuthType::WorkloadIdentity,
        &["workloadIdentity", "workload-identity", "wi"],
    ),
    (
        AuthType::KeyvaultCsi,
        &[
            "keyvaultCsi",
            "keyvault-csi",
            "csi",
            "keyvaultSecretsProvider",
            "keyvault-secrets-provider",
        ],
    ),
];

/// The accepted spellings of each client type, in their documented forms: the request
/// schema's (first), the documentation's (the TSV column) and the aliases.
/// [`ClientType::parse`] accepts exactly these, case-insensitively and ignoring `-`, `_`,
/// `.` and spaces.
pub(crate) const CLIENT_TYPE_SPELLINGS: [(ClientType, &[&str]); 11] = [
    (ClientType::None, &["none", "other"]),
    (ClientType::Python, &["python"]),
    (ClientType::Django, &["django"]),
    (ClientType::Dotnet, &["dotnet", ".net", "net", "csharp"]),
    (ClientType::Java, &["java"]),
    (
        ClientType::SpringBoot,
        &["springBoot", "springboot", "spring-boot", "spring"],
    ),
    (
        ClientType::KafkaSpringBoot,
        &["kafkaSpringBoot", "kafka-springboot", "kafka-spring-boot"],
    ),
    (ClientType::Nodejs, &["nodejs", "node.js", "node"]),
    (ClientType::Go, &["go", "golang"]),
    (ClientType::Php, &["php"]),
    (ClientType::Ruby, &["ruby"]),
];

/// The value whose spellings include `s` (see [`normalize`]).
fn lookup<T: Copy>(table: &[(T, &[&str])], s: &str) -> Option<T> {
    let n = normalize(s);
    table
        .iter()
        .find(|(_, names)| names.iter().any(|x| normalize(x) == n))
        .map(|(v, _)| *v)
}

/// How the application authenticates to the target service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthType {
    /// Connection string, password or key, delivered in a Secret.
    Secret,
    /// Client ID, tenant ID and client secret of a service principal, in a Secret.
    ServicePrincipal,
    /// A user-assigned managed identity federated with a ServiceAccount.
    WorkloadIdentity,
    /// Key Vault objects mounted by the Secrets Store CSI driver (a SecretProviderClass).
    KeyvaultCsi,
}

impl AuthType {
    /// Every auth type, in display order.
    pub const ALL: [AuthType; 4] = [
        AuthType::Secret,
        AuthType::ServicePrincipal,
        AuthType::WorkloadIdentity,
        AuthType::KeyvaultCsi,
    ];

    /// The spelling of the request schema (`secret`, `servicePrincipal`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Secret => "secret",
            AuthType::ServicePrincipal => "servicePrincipal",
            AuthType::WorkloadIdentity => "workloadIdentity",
            AuthType::KeyvaultCsi => "keyvaultCsi",
        }
    }

    /// The spelling of the `auth_type` column of the catalog data, if the data has one.
    pub fn tsv_name(self) -> Option<&'static str> {
        match self {
            AuthType::Secret => Some("secret"),
            AuthType::ServicePrincipal => Some("service-principal"),
            AuthType::WorkloadIdentity => Some("workload-identity"),
            AuthType::KeyvaultCsi => None,
        }
    }

    /// Parses any accepted spelling: `secret`, `connection-string`, `servicePrincipal`,
    /// `service-principal`, `sp`, `workloadIdentity`, `workload-identity`, `wi`,
    /// `keyvaultCsi`, `keyvault-csi`, `csi`, `keyvault-secrets-provider` (case-insensitive;
    /// `-`, `_`, `.` and spaces ignored). [`crate::accepted_spellings`] lists them.
    pub fn parse(s: &str) -> Option<AuthType> {
        lookup(&AUTH_TYPE_SPELLINGS, s)
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language or framework of the application; it selects the configuration names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientType {
    /// No specific client ("Other" in the documentation).
    None,
    /// Python.
    Python,
    /// Django.
    Django,
    /// .NET.
    Dotnet,
    /// Java.
    Java,
    /// Spring Boot (Spring application properties).
    SpringBoot,
    /// Spring Boot with Kafka (Event Hubs only).
    KafkaSpringBoot,
    /// Node.js.
    Nodejs,
    /// Go.
    Go,
    /// PHP.
    Php,
    /// Ruby.
    Ruby,
}

impl ClientType {
    /// Every client type, in display order.
    pub const ALL: [ClientType; 11] = [
        ClientType::None,
        ClientType::Python,
        ClientType::Django,
        ClientType::Dotnet,
        ClientType::Java,
        ClientType::SpringBoot,
        ClientType::KafkaSpringBoot,
        ClientType::Nodejs,
        ClientType::Go,
        ClientType::Php,
        ClientType::Ruby,
    ];

    /// The spelling of the request schema (`none`, `springBoot`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::None => "none",
            ClientType::Python => "python",
            ClientType::Django => "django",
            ClientType::Dotnet => "dotnet",
            ClientType::Java => "java",
            ClientType::SpringBoot => "springBoot",
            ClientType::KafkaSpringBoot => "kafkaSpringBoot",
            ClientType::Nodejs => "nodejs",
            ClientType::Go => "go",
            ClientType::Php => "php",
            ClientType::Ruby => "ruby",
        }
    }

    /// The spelling of the `client_type` column of the catalog data.
    pub fn tsv_name(self) -> &'static str {
        match self {
            ClientType::SpringBoot => "springboot",
            ClientType::KafkaSpringBoot => "kafka-springboot",
            other => other.as_str(),
        }
    }

    /// Parses any accepted spelling (`springBoot`, `springboot`, `spring-boot`,
    /// `kafka-springboot`, `node`, `.net`, `other`, ...), case-insensitively and ignoring
    /// `-`, `_`, `.` and spaces. [`crate::accepted_spellings`] lists them.
    pub fn parse(s: &str) -> Option<ClientType> {
        lookup(&CLIENT_TYPE_SPELLINGS, s)
    }
}

impl fmt::Display for ClientType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the created objects when the connection is removed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DeletionPolicy {
    /// Keep the objects (as Service Connector does).
    #[default]
    Retain,
    /// Delete the objects this connection created.
    Delete,
}

impl DeletionPolicy {
    /// The spelling of the request schema.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Retain => "Retain",
            DeletionPolicy::Delete => "Delete",
        }
    }

    /// Parses `Retain` or `Delete`, case-insensitively.
    pub fn parse(s: &str) -> Option<DeletionPolicy> {
        match normalize(s).as_str() {
            "retain" => Some(DeletionPolicy::Retain),
            "delete" => Some(DeletionPolicy::Delete),
            _ => None,
        }
    }
}

/// What the agent does when an object the connection materialized is deleted or changed
/// by someone else (drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DriftPolicy {
    /// Report it and run sc-job to restore the objects.
    #[default]
    Repair,
    /// Report it only (phase `Drifted`, a Warning event); nothing is run.
    Report,
}

impl DriftPolicy {
    /// The spelling of the request schema.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftPolicy::Repair => "Repair",
            DriftPolicy::Report => "Report",
        }
    }

    /// Parses `Repair` or `Report`, case-insensitively.
    pub fn parse(s: &str) -> Option<DriftPolicy> {
        match normalize(s).as_str() {
            "repair" => Some(DriftPolicy::Repair),
            "report" => Some(DriftPolicy::Report),
            _ => None,
        }
    }

    /// Whether this is the default, [`DriftPolicy::Repair`] (not written in a spec, so
    /// the content hash of a connection that does not set it stays what it was).
    pub fn is_default(&self) -> bool {
        *self == DriftPolicy::Repair
    }
}

/// Kinds of existing workloads a connection can be injected into. Pods and Jobs are not
/// accepted: their pod templates are immutable once created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 CronJob (applies to the Jobs it creates from then on).
    CronJob,
}

impl WorkloadKind {
    /// Every accepted kind.
    pub const ALL: [WorkloadKind; 4] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
    ];

    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CronJob => "CronJob",
        }
    }

    /// The apiVersion of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "batch/v1",
            _ => "apps/v1",
        }
    }

    /// The JSON pointer of the pod template inside an object of this kind.
    pub fn pod_template_pointer(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }

    /// Parses a kind case-insensitively (`deployment`, `Deployment`, `deploy`).
    pub fn parse(s: &str) -> Option<WorkloadKind> {
        match normalize(s).as_str() {
            "deployment" | "deployments" | "deploy" => Some(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Some(WorkloadKind::StatefulSet),
            "daemonset" | "daemonsets" | "ds" => Some(WorkloadKind::DaemonSet),
            "cronjob" | "cronjobs" | "cj" => Some(WorkloadKind::CronJob),
            _ => None,
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An existing workload to inject the connection into.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorkloadRef {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name, in the connection's namespace.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for a in AuthType::ALL {
            assert_eq!(AuthType::parse(a.as_str()), Some(a));
            if let Some(t) = a.tsv_name() {
                assert_eq!(AuthType::parse(t), Some(a));
            }
        }
        for c in ClientType::ALL {
            assert_eq!(ClientType::parse(c.as_str()), Some(c));
            assert_eq!(ClientType::parse(c.tsv_name()), Some(c));
        }
        assert_eq!(AuthType::parse("connection-string"), Some(AuthType::Secret));
        assert_eq!(
            ClientType::parse("kafka-springboot"),
            Some(ClientType::KafkaSpringBoot)
        );
        assert_eq!(AuthType::parse("password"), None);
    }
}
