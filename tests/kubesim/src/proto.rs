//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope with a
//! `runtime.Unknown` message, decoded to the JSON object the rest of the server handles.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("the body is not a Kubernetes protobuf envelope")]
    NotEnvelope,
    /// A kind this server does not decode from protobuf (answered with 415).
    #[error("protobuf bodies of kind {0} are not supported; send application/json")]
    Unsupported(String),
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
}

/// Decode a protobuf body into a JSON object with `apiVersion` and `kind`.
pub fn decode(_body: &[u8]) -> Result<Value, ProtoError> {
    todo!("proto module")
}
