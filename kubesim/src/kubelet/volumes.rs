//! Pod volumes on the host. Each volume is materialized as a directory
//! `<workdir>/volumes/<name>`: `configMap` and `secret` (keys or `items`, `optional`),
//! `projected` (configMap, secret, downwardAPI and serviceAccountToken sources), `downwardAPI`,
//! `emptyDir`, `csi` of the Secrets Store CSI driver ([`super::csi`]); a `hostPath` is the
//! host path itself. Containers run on the host, so a
//! container's `volumeMounts` cannot appear at their `mountPath`: instead every occurrence of a
//! mount path (as a path prefix) in the container's command, args and env values is rewritten
//! to the volume's host directory (see [`translate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::env::SourceKind;

/// Reads a Secret (decoded) or ConfigMap's data.
pub type Lookup<'a> = super::env::Lookup<'a>;

/// Mounts a CSI volume of the Secrets Store CSI driver: its files, or why the mount fails.
pub type CsiMount<'a> = dyn Fn(&Value) -> Result<BTreeMap<String, Vec<u8>>, String> + 'a;

/// Why a volume cannot be set up (reported as a FailedMount event; the pod keeps waiting).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {reason}")]
pub struct MountError {
    pub volume: String,
    pub reason: String,
}

/// The host directory of a volume.
pub fn volume_dir(pod_dir: &Path, volume: &Value) -> PathBuf {
    if let Some(p) = volume["hostPath"]["path"].as_str() {
        return PathBuf::from(p);
    }
    pod_dir
        .join("volumes")
        .join(volume["name"].as_str().unwrap_or("unnamed"))
}

/// Write every volume of `pod` under `pod_dir` (again: contents are refreshed). `token` is the
/// ServiceAccount token for projected `serviceAccountToken` sources; `csi` mounts the
/// volumes of the Secrets Store CSI driver (see [`super::csi`]).
pub fn materialize(
    pod: &Value,
    pod_dir: &Path,
    token: Option<&str>,
    lookup: &Lookup<'_>,
    csi: &CsiMount<'_>,
) -> Result<(), MountError> {
    for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = volume["name"].as_str().unwrap_or("unnamed").to_string();
        let fail = |reason: String| MountError {
            volume: name.clone(),
            reason,
        };
        if volume["hostPath"].is_object() {
            continue;
        }
        let dir = volume_dir(pod_dir, volume);
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("creating {} failed: {e}", dir.display())))?;
        if volume["emptyDir"].is_object() {
            // World-writable as the kubelet makes it, for containers running as another user.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        }
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if volume["configMap"].is_object() {
            source_files(
                &volume["configMap"],
                "name",
                SourceKind::ConfigMap,
                lookup,
                &mut files,
            )
            .map_err(fail)?;
        } else if volume["secret"].is_object() {
            source_files(
                &volume["secret"],
                "secretName",
                SourceKind::Secret,
                lookup,
                &mut files,
            )
            .map_err(fail)?;
        } else if volume["downwardAPI"].is_object() {
            downward_files(pod, &volume["downwardAPI"], &mut files);
        } else if super::csi::is_secrets_store(volume) {
            files.extend(csi(volume).map_err(fail)?);
        } else if volume["projected"].is_object() {
            for source in volume["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if source["configMap"].is_object() {
                    source_files(
                        &source["configMap"],
                        "name",
                        SourceKind::ConfigMap,
                        lookup,
                        &mut files,
                    )
                    .map_err(fail)?;
                } else if source["secret"].is_object() {
                    source_files(
                        &source["secret"],
                        "name",
                        SourceKind::Secret,
                        lookup,
                        &mut files,
                    )
                    .map_err(fail)?;
                } else if source["downwardAPI"].is_object() {
                    downward_files(pod, &source["downwardAPI"], &mut files);
                } else if let Some(path) = source["serviceAccountToken"]["path"].as_str()
                    && let Some(t) = token
                {
                    files.insert(path.to_string(), t.as_bytes().to_vec());
                }
            }
        }
        for (path, content) in files {
            let target = dir.join(&path);
            if !target.starts_with(&dir) || path.split('/').any(|c| c == "..") {
                return Err(fail(format!("invalid path {path:?}")));
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| fail(format!("creating {} failed: {e}", parent.display())))?;
            }
            write_if_changed(&target, &content)
                .map_err(|e| fail(format!("writing {} failed: {e}", target.display())))?;
            if let Some(mode) = default_mode(volume) {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
            }
        }
    }
    Ok(())
}

/// `defaultMode` of a configMap, secret, projected or downwardAPI volume.
fn default_mode(volume: &Value) -> Option<u32> {
    ["configMap", "secret", "projected", "downwardAPI"]
        .iter()
        .find_map(|k| volume[k]["defaultMode"].as_u64())
        .map(|m| (m & 0o7777) as u32)
}

fn write_if_changed(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|c| c == content) {
        return Ok(());
    }
    let tmp = path.with_extension("kubesim-tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(tmp, path)
}

/// The files of a configMap / secret source: every key, or the listed `items`.
fn source_files(
    src: &Value,
    name_field: &str,
    kind: SourceKind,
    lookup: &Lookup<'_>,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let name = src[name_field].as_str().unwrap_or("");
    let optional = src["optional"].as_bool() == Some(true);
    let what = match kind {
        SourceKind::Secret => "secret",
        SourceKind::ConfigMap => "configmap",
    };
    let Some(data) = lookup(kind, name) else {
        return if optional {
            Ok(())
        } else {
            Err(format!("{what} {name:?} not found"))
        };
    };
    match src["items"].as_array() {
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or("");
                let path = item["path"].as_str().unwrap_or(key);
                match data.get(key) {
                    Some(v) => {
                        files.insert(path.to_string(), v.as_bytes().to_vec());
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "configmap references non-existent config key: {key}"
                        ));
                    }
                }
            }
        }
        None => {
            for (k, v) in data {
                files.insert(k, v.into_bytes());
            }
        }
    }
    Ok(())
}

fn downward_files(pod: &Value, src: &Value, files: &mut BTreeMap<String, Vec<u8>>) {
    for item in src["items"].as_array().into_iter().flatten() {
        let Some(path) = item["path"].as_str() else {
            continue;
        };
        let Some(field) = item["fieldRef"]["fieldPath"].as_str() else {
            continue;
        };
        let m = &pod["metadata"];
        let value = match field {
            "metadata.name" | "metadata.namespace" | "metadata.uid" => m
                [field.trim_start_matches("metadata.")]
            .as_str()
            .unwrap_or("")
            .to_string(),
            "metadata.labels" | "metadata.annotations" => m[field.trim_start_matches("metadata.")]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        files.insert(path.to_string(), value.into_bytes());
    }
}

/// The (mount path, host path) pairs of a container, longest mount path first.
pub fn mounts(pod: &Value, container: &Value, pod_dir: &Path) -> Vec<(String, PathBuf)> {
    let volumes: BTreeMap<&str, &Value> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    let mut out: Vec<(String, PathBuf)> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let volume = volumes.get(m["name"].as_str()?)?;
            let mount = m["mountPath"].as_str()?.trim_end_matches('/').to_string();
            let mut host = volume_dir(pod_dir, volume);
            if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                host = host.join(sub);
            }
            (!mount.is_empty()).then_some((mount, host))
        })
        .collect();
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    out
}

/// Rewrite every mount path in `s` that stands as a path prefix (at the start or after a
/// character that cannot be part of a path, and followed by the end or `/`) to its host
/// directory: `--config=/etc/app/config.json` -> `--config=<workdir>/volumes/config/config.json`.
pub fn translate(s: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let bytes = s.as_bytes();
    'scan: while i < s.len() {
        let boundary_before = i == 0 || !is_path_char(bytes[i - 1]);
        if boundary_before && bytes[i] == b'/' {
            for (mount, host) in mounts {
                let end = i + mount.len();
                if s[i..].starts_with(mount.as_str()) && (end == s.len() || bytes[end] == b'/') {
                    out.push_str(&host.display().to_string());
                    i = end;
                    continue 'scan;
                }
            }
        }
        let ch = s[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn translates_mount_paths_only_at_path_boundaries() {
        let mounts = vec![
            (
                "/etc/app/extra".to_string(),
                PathBuf::from("/w/volumes/extra"),
            ),
            ("/etc/app".to_string(), PathBuf::from("/w/volumes/config")),
        ];
        assert_eq!(
            translate("--config=/etc/app/config.json", &mounts),
            "--config=/w/volumes/config/config.json"
        );
        assert_eq!(translate("/etc/app", &mounts), "/w/volumes/config");
        assert_eq!(translate("/etc/app/extra/x", &mounts), "/w/volumes/extra/x");
        assert_eq!(translate("/etc/application", &mounts), "/etc/application");
        assert_eq!(translate("/x/etc/app/y", &mounts), "/x/etc/app/y");
        assert_eq!(translate("a:/etc/app:b", &mounts), "a:/etc/app:b");
        assert_eq!(
            translate("cat /etc/app/f; ls /etc/app/", &mounts),
            "cat /w/volumes/config/f; ls /w/volumes/config/"
        );
    }

    #[test]
    fn materializes_config_secret_projected_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let lookup = |kind: SourceKind, name: &str| -> Option<BTreeMap<String, String>> {
            match (kind, name) {
                (SourceKind::ConfigMap, "cfg") => {
                    Some([("config.json".to_string(), "{}".to_string())].into())
                }
                (SourceKind::Secret, "creds") => {
                    Some([("password".to_string(), "pw".to_string())].into())
                }
                _ => None,
            }
        };
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"volumes": [
            {"name": "config", "configMap": {"name": "cfg", "defaultMode": 0o755}},
            {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "password", "path": "db/pw"}]}},
            {"name": "api", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "maybe", "configMap": {"name": "absent", "optional": true}}
        ]}});
        let no_csi = |_: &Value| Ok(BTreeMap::new());
        materialize(&pod, dir.path(), Some("tok"), &lookup, &no_csi).unwrap();
        let v = dir.path().join("volumes");
        assert_eq!(
            std::fs::read_to_string(v.join("config/config.json")).unwrap(),
            "{}"
        );
        assert_eq!(
            std::fs::read_to_string(v.join("creds/db/pw")).unwrap(),
            "pw"
        );
        assert_eq!(std::fs::read_to_string(v.join("api/token")).unwrap(), "tok");
        assert_eq!(
            std::fs::read_to_string(v.join("api/namespace")).unwrap(),
            "ns"
        );
        assert!(v.join("scratch").is_dir());
        let bad = json!({"spec": {"volumes": [{"name": "config", "configMap": {"name": "gone"}}]}});
        let err = materialize(&bad, dir.path(), None, &lookup, &no_csi).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"gone\" not found"
        );
        let c = json!({"volumeMounts": [{"name": "config", "mountPath": "/etc/app/"}, {"name": "nope", "mountPath": "/x"}]});
        assert_eq!(
            mounts(&pod, &c, dir.path()),
            vec![("/etc/app".to_string(), v.join("config"))]
        );
    }
}
