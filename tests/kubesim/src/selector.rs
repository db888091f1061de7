//! Label selectors (the full grammar and the JSON `matchLabels`/`matchExpressions` form) and
//! field selectors with the fields each resource supports.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    _private: (),
}

impl LabelSelector {
    /// Parse `k=v,k!=v,k in (a,b),k notin (a),k,!k` (URL-decoded already).
    pub fn parse(_s: &str) -> Result<Self, String> {
        todo!("selector module")
    }
    /// From a `metav1.LabelSelector` JSON object (`matchLabels`, `matchExpressions`).
    pub fn from_json(_sel: &Value) -> Result<Self, String> {
        todo!("selector module")
    }
    /// Whether an object's `metadata.labels` match.
    pub fn matches(&self, _obj: &Value) -> bool {
        todo!("selector module")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    _private: (),
}

impl FieldSelector {
    /// Parse `a=b,c!=d` for `resource` (plural, with its group): unsupported fields are an
    /// error with the API server's message `field label not supported: <field>`.
    pub fn parse(_s: &str, _group: &str, _resource: &str) -> Result<Self, String> {
        todo!("selector module")
    }
    pub fn matches(&self, _obj: &Value) -> bool {
        todo!("selector module")
    }
}
