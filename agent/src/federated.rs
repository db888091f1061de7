//! The federated identity credential a workload-identity connection needs: Microsoft Entra
//! trusts a token of the cluster's issuer for the ServiceAccount `sc-account-<clientId>` only
//! once the user-assigned identity carries a federated credential with that issuer and subject.
//! Nothing in the cluster can create it; this module spells it out, with the ready
//! `az identity federated-credential create` command.
//!
//! The issuer: the chart value `workloadIdentity.oidcIssuerUrl` (recorded on `sc-requests`)
//! when set, else the cluster's service-account issuer discovery (`GET
//! /.well-known/openid-configuration`, field `issuer`), else a placeholder. An explicit value
//! wins: discovery answers with the API server's issuer, which is the public OIDC issuer only
//! when the cluster has one enabled.
//!
//! The credential's name is deterministic: `sc-<namespace>-<10 hex digits of
//! SHA-256("<issuer>\n<subject>")>`. Entra refuses two credentials with the same issuer and
//! subject on one identity, so the name follows exactly those: running the command again
//! updates the same credential, and two clusters federating the same identity get two names.

use sc_contract::cluster::ClusterInfo;
use sc_model::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The audience of every federated credential for Entra workload identity.
pub const AUDIENCE: &str = "api://AzureADTokenExchange";

/// The issuer a cluster without a public OIDC issuer reports (the API server's default).
pub const IN_CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Placeholders of the `az` command for what is not known.
pub const ISSUER_PLACEHOLDER: &str = "<oidc-issuer-url>";
/// The identity's name: the request names the identity by its client ID only.
pub const IDENTITY_PLACEHOLDER: &str = "<identity-name>";
/// The identity's resource group, when the cluster's is not known either.
pub const RESOURCE_GROUP_PLACEHOLDER: &str = "<identity-resource-group>";
/// The credential name, which needs the issuer.
pub const NAME_PLACEHOLDER: &str = "<credential-name>";

/// Where the issuer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "source", content = "detail")]
pub enum IssuerSource {
    /// `workloadIdentity.oidcIssuerUrl` or `--oidc-issuer-url`.
    Value,
    /// The cluster's `/.well-known/openid-configuration`.
    Discovery,
    /// Neither: why discovery gave nothing.
    Unknown(String),
}

/// The issuer of the cluster's ServiceAccount tokens, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issuer {
    /// The issuer URL.
    pub url: Option<String>,
    /// Where it came from.
    #[serde(flatten)]
    pub source: IssuerSource,
}

impl Issuer {
    /// An issuer nobody could tell (`plan` without `--oidc-issuer-url`).
    pub fn unknown(why: &str) -> Issuer {
        Issuer {
            url: None,
            source: IssuerSource::Unknown(why.to_string()),
        }
    }

    /// A warning when the issuer is the API server's in-cluster default, which Entra cannot
    /// reach: the cluster has no public OIDC issuer yet.
    pub fn warning(&self) -> Option<String> {
        let url = self.url.as_deref()?;
        (url.trim_end_matches('/') == IN_CLUSTER_ISSUER).then(|| {
            format!(
                "the cluster's issuer is {url}, which Microsoft Entra cannot reach: enable the OIDC issuer (AKS: az aks update --enable-oidc-issuer --enable-workload-identity) or set workloadIdentity.oidcIssuerUrl"
            )
        })
    }
}

/// Chooses the issuer: the configured value wins, then what discovery found.
pub fn choose_issuer(
    configured: Option<&str>,
    discovered: Result<Option<String>, String>,
) -> Issuer {
    if let Some(v) = configured.map(str::trim).filter(|v| !v.is_empty()) {
        return Issuer {
            url: Some(v.to_string()),
            source: IssuerSource::Value,
        };
    }
    match discovered {
        Ok(Some(url)) => Issuer {
            url: Some(url),
            source: IssuerSource::Discovery,
        },
        Ok(None) => Issuer::unknown("the cluster's issuer discovery names no issuer"),
        Err(why) => Issuer::unknown(&why),
    }
}

/// The federated credential one connection needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredential {
    /// The connection.
    pub connection: String,
    /// The credential's name (a placeholder without an issuer).
    pub name: String,
    /// The identity's client ID.
    pub client_id: String,
    /// The identity's name: the connection's `identityName`, else a placeholder (the request
    /// names the identity by its client ID).
    pub identity_name: String,
    /// The resource group passed to `az`: the connection's `identityResourceGroup`, else the
    /// cluster's, else a placeholder.
    pub resource_group: String,
    /// The issuer URL (a placeholder when unknown).
    pub issuer: String,
    /// `system:serviceaccount:<namespace>:sc-account-<clientId>`.
    pub subject: String,
    /// `api://AzureADTokenExchange`.
    pub audience: String,
    /// The ready command.
    pub command: String,
}

/// `sc-<namespace>-<10 hex digits of SHA-256("<issuer>\n<subject>")>`: 3 to 120 characters of
/// letters, digits and `-`, as Entra requires.
pub fn credential_name(namespace: &str, issuer: &str, subject: &str) -> String {
    let digest = Sha256::digest(format!("{issuer}\n{subject}").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let ns: String = namespace.chars().take(100).collect();
    format!("sc-{ns}-{hex}")
}

/// `system:serviceaccount:<namespace>:<service account>`.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// The credential of a connection that uses workload identity (`None` otherwise).
pub fn credential(
    conn: &Connection,
    issuer: &Issuer,
    cluster: &ClusterInfo,
) -> Option<FederatedCredential> {
    let client_id = conn.workload_identity_client_id()?.to_string();
    let sa = conn.service_account_name()?;
    let ns = conn.spec.namespace.clone();
    let subject = subject(&ns, &sa);
    let (name, issuer_text) = match &issuer.url {
        Some(url) => (credential_name(&ns, url, &subject), url.clone()),
        None => (NAME_PLACEHOLDER.to_string(), ISSUER_PLACEHOLDER.to_string()),
    };
    let identity_name = conn
        .spec
        .identity_name
        .clone()
        .unwrap_or_else(|| IDENTITY_PLACEHOLDER.to_string());
    let resource_group = conn
        .spec
        .identity_resource_group
        .clone()
        .or_else(|| cluster.resource_group())
        .unwrap_or_else(|| RESOURCE_GROUP_PLACEHOLDER.to_string());
    let command = format!(
        "az identity federated-credential create --name {name} --identity-name {identity_name} --resource-group {resource_group} --issuer {issuer_text} --subject {subject} --audiences {AUDIENCE}"
    );
    Some(FederatedCredential {
        connection: conn.name().to_string(),
        name,
        client_id,
        identity_name,
        resource_group,
        issuer: issuer_text,
        subject,
        audience: AUDIENCE.to_string(),
        command,
    })
}

impl FederatedCredential {
    /// The lines a command prints, each indented by `indent`.
    pub fn lines(
        &self,
        conn: &Connection,
        issuer: &Issuer,
        cluster: &ClusterInfo,
        indent: &str,
    ) -> Vec<String> {
        let mut out = vec![
            format!(
                "{indent}federated credential of {}: the identity with client ID {} must trust this cluster's ServiceAccount token",
                self.connection, self.client_id
            ),
            format!("{indent}  issuer:   {}{}", self.issuer, source_note(issuer)),
            format!("{indent}  subject:  {}", self.subject),
            format!("{indent}  audience: {}", self.audience),
            format!("{indent}  create it (once per cluster and namespace):"),
            format!("{indent}    {}", self.command),
        ];
        let mut notes = Vec::new();
        if conn.spec.identity_name.is_none() {
            notes.push(format!(
                "replace {IDENTITY_PLACEHOLDER} with the name of the user-assigned identity whose client ID is {} (or set connections.{}.identityName)",
                self.client_id, self.connection
            ));
        }
        if conn.spec.identity_resource_group.is_none() && cluster.resource_group().is_some() {
            notes.push(format!(
                "--resource-group is the cluster's ({}): set connections.{}.identityResourceGroup if the identity is in another resource group",
                self.resource_group, self.connection
            ));
        }
        if issuer.url.is_none() {
            notes.push("pass --oidc-issuer-url, set workloadIdentity.oidcIssuerUrl or run sc-agent show NAME in the cluster for the issuer and the credential's name".to_string());
        }
        if let Some(w) = issuer.warning() {
            notes.push(w);
        }
        out.extend(notes.into_iter().map(|n| format!("{indent}  note: {n}")));
        out
    }
}

fn source_note(issuer: &Issuer) -> String {
    match &issuer.source {
        IssuerSource::Value => " (from workloadIdentity.oidcIssuerUrl)".to_string(),
        IssuerSource::Discovery => {
            " (from the cluster's /.well-known/openid-configuration)".to_string()
        }
        IssuerSource::Unknown(why) => format!(" (unknown: {why})"),
    }
}

/// The issuer of the cluster's service-account issuer discovery: `Ok(None)` when the document
/// names none, `Err` with the reason when it cannot be read (forbidden, not served, unreachable).
pub async fn discover_issuer(client: &kube::Client) -> Result<Option<String>, String> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| format!("building the discovery request failed: {e}"))?;
    match client.request::<serde_json::Value>(request).await {
        Ok(doc) => Ok(doc["issuer"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)),
        Err(kube::Error::Api(e)) => Err(format!(
            "GET /.well-known/openid-configuration: {} ({})",
            e.message, e.code
        )),
        Err(e) => Err(format!("GET /.well-known/openid-configuration failed: {e}")),
    }
}

/// What the chart recorded about the cluster, from the annotations of `sc-requests`
/// (empty when it cannot be read).
pub async fn cluster_info(client: &kube::Client, ns: &str) -> ClusterInfo {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), ns);
    match api.get_opt(sc_contract::REQUESTS_CONFIGMAP).await {
        Ok(Some(cm)) => ClusterInfo::from_annotations(&cm.metadata.annotations.unwrap_or_default()),
        _ => ClusterInfo::default(),
    }
}

/// The issuer for the commands in the cluster: the recorded value, else discovery.
pub async fn cluster_issuer(client: &kube::Client, cluster: &ClusterInfo) -> Issuer {
    if cluster.oidc_issuer_url.is_some() {
        return choose_issuer(cluster.oidc_issuer_url.as_deref(), Ok(None));
    }
    choose_issuer(None, discover_issuer(client).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sql_wi() -> Connection {
        let values = json!({"sql_conn": {
            "namespace": "sql-app", "targetType": "sql", "authType": "workloadIdentity",
            "clientType": "python",
            "parameters": {"server": "s1", "database": "d1",
                "clientId": "7d3e9c1a-5b2f-4e8d-9a6c-0f1e2d3c4b5a"}
        }});
        let set = sc_model::validate_connections(&values).expect("a valid request");
        set.connections()[0].clone()
    }

    #[test]
    fn the_configured_issuer_wins_over_discovery() {
        let i = choose_issuer(
            Some("https://oidc.example/abc/"),
            Ok(Some("https://kubernetes.default.svc.cluster.local".into())),
        );
        assert_eq!(i.url.as_deref(), Some("https://oidc.example/abc/"));
        assert_eq!(i.source, IssuerSource::Value);
        let i = choose_issuer(Some(" "), Ok(Some("https://d.example".into())));
        assert_eq!(i.source, IssuerSource::Discovery);
        let i = choose_issuer(None, Err("forbidden (403)".into()));
        assert_eq!(i.url, None);
        assert_eq!(i.source, IssuerSource::Unknown("forbidden (403)".into()));
        assert!(
            choose_issuer(None, Ok(Some(IN_CLUSTER_ISSUER.into())))
                .warning()
                .is_some()
        );
        assert!(
            choose_issuer(Some("https://oidc.example"), Ok(None))
                .warning()
                .is_none()
        );
    }

    #[test]
    fn the_credential_is_spelled_out() {
        let conn = sql_wi();
        let issuer = choose_issuer(
            Some("https://westeurope.oic.prod-aks.azure.com/t/c/"),
            Ok(None),
        );
        let cluster = ClusterInfo {
            resource_id: Some("/subscriptions/s/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks1".into()),
            ..ClusterInfo::default()
        };
        let c = credential(&conn, &issuer, &cluster).expect("a workload-identity connection");
        let sa = "sc-account-7d3e9c1a-5b2f-4e8d-9a6c-0f1e2d3c4b5a";
        assert_eq!(c.subject, format!("system:serviceaccount:sql-app:{sa}"));
        assert_eq!(c.audience, "api://AzureADTokenExchange");
        assert_eq!(c.resource_group, "rg-aks");
        assert!(c.name.starts_with("sc-sql-app-") && c.name.len() == "sc-sql-app-".len() + 10);
        assert_eq!(
            c.command,
            format!(
                "az identity federated-credential create --name {} --identity-name <identity-name> --resource-group rg-aks --issuer https://westeurope.oic.prod-aks.azure.com/t/c/ --subject system:serviceaccount:sql-app:{sa} --audiences api://AzureADTokenExchange",
                c.name
            )
        );
        // Deterministic, and different for another cluster's issuer.
        assert_eq!(credential(&conn, &issuer, &cluster).unwrap().name, c.name);
        let other = choose_issuer(Some("https://other.example/"), Ok(None));
        assert_ne!(credential(&conn, &other, &cluster).unwrap().name, c.name);
        // Unknown issuer and resource group: placeholders, and a note on how to learn them.
        let c = credential(&conn, &Issuer::unknown("offline"), &ClusterInfo::default()).unwrap();
        assert!(c.command.contains("--issuer <oidc-issuer-url>"));
        assert!(
            c.command
                .contains("--resource-group <identity-resource-group>")
        );
        assert!(c.command.contains("--name <credential-name>"));
        let text = c
            .lines(
                &conn,
                &Issuer::unknown("offline"),
                &ClusterInfo::default(),
                "",
            )
            .join("\n");
        assert!(text.contains("--oidc-issuer-url"), "{text}");
    }

    #[test]
    fn the_identity_name_and_resource_group_of_the_request_fill_the_command() {
        let values = json!({"sql_conn": {
            "namespace": "sql-app", "targetType": "sql", "authType": "workloadIdentity",
            "clientType": "python", "identityName": "orders-identity",
            "parameters": {"server": "s1", "database": "d1",
                "clientId": "7d3e9c1a-5b2f-4e8d-9a6c-0f1e2d3c4b5a"}
        }});
        let set = sc_model::validate_connections(&values).expect("a valid request");
        let conn = &set.connections()[0];
        let issuer = choose_issuer(Some("https://oidc.example/"), Ok(None));
        let cluster = ClusterInfo {
            resource_id: Some("/subscriptions/s/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks1".into()),
            ..ClusterInfo::default()
        };
        let c = credential(conn, &issuer, &cluster).unwrap();
        assert_eq!(c.identity_name, "orders-identity");
        assert!(
            c.command
                .contains("--identity-name orders-identity --resource-group rg-aks --issuer"),
            "{}",
            c.command
        );
        let text = c.lines(conn, &issuer, &cluster, "").join("\n");
        assert!(!text.contains(IDENTITY_PLACEHOLDER), "{text}");
        assert!(text.contains("identityResourceGroup"), "{text}");
        // The identity's own resource group wins over the cluster's; no note is left.
        let mut values = values;
        values["sql_conn"]["identityResourceGroup"] = json!("rg-identities");
        let set = sc_model::validate_connections(&values).expect("a valid request");
        let conn = &set.connections()[0];
        let c = credential(conn, &issuer, &cluster).unwrap();
        assert_eq!(c.resource_group, "rg-identities");
        assert!(c.command.contains("--resource-group rg-identities "));
        let text = c.lines(conn, &issuer, &cluster, "").join("\n");
        assert!(!text.contains("note:"), "{text}");
    }

    #[test]
    fn the_name_matches_the_chart_notes() {
        // NOTES.txt computes the same name with sha256sum: keep them in step.
        assert_eq!(
            credential_name(
                "default",
                "https://issuer.example",
                "system:serviceaccount:default:sc-account-x"
            ),
            format!(
                "sc-default-{}",
                &hex_sha256("https://issuer.example\nsystem:serviceaccount:default:sc-account-x")
                    [..10]
            )
        );
    }

    fn hex_sha256(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn connections_without_workload_identity_need_none() {
        let values = json!({"blob": {
            "namespace": "apps", "targetType": "storage-blob", "authType": "secret",
            "clientType": "python", "parameters": {"accountName": "a"},
            "secrets": {"accountKey": "k"}
        }});
        let set = sc_model::validate_connections(&values).expect("a valid request");
        assert!(
            credential(
                &set.connections()[0],
                &Issuer::unknown("x"),
                &ClusterInfo::default()
            )
            .is_none()
        );
    }
}
