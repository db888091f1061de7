//! What the chart records about the cluster on the requests ConfigMap `sc-requests`, for the
//! operator commands and the install hook: the values Azure Arc passes to every extension
//! chart (`Azure.Cluster.*`) and the chart value `workloadIdentity.oidcIssuerUrl`. Each is an
//! annotation, absent when the value is not set.

use std::collections::BTreeMap;

/// `Azure.Cluster.ResourceId`: the Azure resource ID of the cluster.
pub const CLUSTER_RESOURCE_ID_ANNOTATION: &str = "sc-extension.io/azure-cluster-resource-id";
/// `Azure.Cluster.Region`: the Azure region of the cluster.
pub const CLUSTER_REGION_ANNOTATION: &str = "sc-extension.io/azure-cluster-region";
/// `Azure.Cluster.Cloud`: the Azure cloud of the cluster (`AzureCloud`, ...).
pub const CLUSTER_CLOUD_ANNOTATION: &str = "sc-extension.io/azure-cluster-cloud";
/// `Azure.Cluster.Distribution`: the Kubernetes distribution Arc reports.
pub const CLUSTER_DISTRIBUTION_ANNOTATION: &str = "sc-extension.io/azure-cluster-distribution";
/// `workloadIdentity.oidcIssuerUrl`: the service-account issuer given in the values.
pub const OIDC_ISSUER_ANNOTATION: &str = "sc-extension.io/oidc-issuer-url";

/// What the chart recorded about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `Azure.Cluster.ResourceId`.
    pub resource_id: Option<String>,
    /// `Azure.Cluster.Region`.
    pub region: Option<String>,
    /// `Azure.Cluster.Cloud`.
    pub cloud: Option<String>,
    /// `Azure.Cluster.Distribution`.
    pub distribution: Option<String>,
    /// `workloadIdentity.oidcIssuerUrl`.
    pub oidc_issuer_url: Option<String>,
}

impl ClusterInfo {
    /// Reads the annotations of the requests ConfigMap; empty values count as absent.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> ClusterInfo {
        let get = |k: &str| {
            a.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ClusterInfo {
            resource_id: get(CLUSTER_RESOURCE_ID_ANNOTATION),
            region: get(CLUSTER_REGION_ANNOTATION),
            cloud: get(CLUSTER_CLOUD_ANNOTATION),
            distribution: get(CLUSTER_DISTRIBUTION_ANNOTATION),
            oidc_issuer_url: get(OIDC_ISSUER_ANNOTATION),
        }
    }

    /// The resource group of the cluster, from its resource ID
    /// (`/subscriptions/<s>/resourceGroups/<rg>/providers/...`, any case).
    pub fn resource_group(&self) -> Option<String> {
        segment_after(self.resource_id.as_deref()?, "resourcegroups")
    }

    /// The cluster's name, the last segment of its resource ID.
    pub fn cluster_name(&self) -> Option<String> {
        let id = self.resource_id.as_deref()?;
        id.trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Whether any Azure value was recorded.
    pub fn has_azure(&self) -> bool {
        self.resource_id.is_some()
            || self.region.is_some()
            || self.cloud.is_some()
            || self.distribution.is_some()
    }
}

/// The path segment after `key` (compared case-insensitively) in an Azure resource ID.
fn segment_after(id: &str, key: &str) -> Option<String> {
    let mut parts = id.split('/').filter(|s| !s.is_empty());
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case(key) {
            return parts.next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_annotations_and_the_resource_group() {
        let a: BTreeMap<String, String> = [
            (
                CLUSTER_RESOURCE_ID_ANNOTATION,
                "/subscriptions/0000/resourcegroups/rg-apps/providers/Microsoft.Kubernetes/connectedClusters/edge-1",
            ),
            (CLUSTER_REGION_ANNOTATION, "westeurope"),
            (CLUSTER_CLOUD_ANNOTATION, " "),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = ClusterInfo::from_annotations(&a);
        assert_eq!(c.resource_group().as_deref(), Some("rg-apps"));
        assert_eq!(c.cluster_name().as_deref(), Some("edge-1"));
        assert_eq!(c.region.as_deref(), Some("westeurope"));
        assert_eq!(c.cloud, None);
        assert!(c.has_azure());
        let none = ClusterInfo::default();
        assert_eq!(none.resource_group(), None);
        assert!(!none.has_azure());
    }
}
