//! From a container spec to a host command line. A container whose image name (the last path
//! segment, without tag or digest) names an executable in the bin directory runs that
//! executable: it is the image's entrypoint, `command` replaces it (a `command[0]` naming the
//! same executable keeps the bin-directory binary) and `args` follow. Any other image has no
//! entrypoint of its own: `command` (or, without one, `args`) runs on the host, looked up in
//! the host's PATH.
//!
//! An image found in the image directory ([`super::oci`]) runs from its unpacked root instead:
//! [`image_command_line`] applies Kubernetes' rules to the image's Entrypoint and Cmd, and
//! [`run_as`] decides the user as the kubelet and the container runtime do.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::oci::{Unpacked, resolve_in_root};

/// `registry.example/team/sc-job:1.2@sha256:...` -> `sc-job`.
pub fn image_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last)
}

/// The program and arguments to run for `container`, after `$(VAR)` expansion of command and
/// args with `env`. The error text is the reason shown as CreateContainerError.
pub fn command_line(
    container: &Value,
    bin_dir: Option<&Path>,
    env: &[(String, String)],
) -> Result<(PathBuf, Vec<String>), String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| super::env::expand(s, env))
            .collect()
    };
    let command = strings(&container["command"]);
    let args = strings(&container["args"]);
    let image = container["image"].as_str().unwrap_or("");
    let name = image_name(image);
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let bin_exe = bin_dir
        .map(|d| d.join(name))
        .filter(|p| !name.is_empty() && is_executable(p));
    if let Some(exe) = bin_exe {
        return Ok(match command.split_first() {
            None => (exe, args),
            Some((first, rest)) if Path::new(first).file_name().is_some_and(|f| f == name) => {
                (exe, rest.iter().cloned().chain(args).collect())
            }
            Some((first, rest)) => (
                resolve(first, bin_dir, path_var.as_deref())?,
                rest.iter().cloned().chain(args).collect(),
            ),
        });
    }
    let argv: Vec<String> = if command.is_empty() {
        args
    } else {
        command.into_iter().chain(args).collect()
    };
    let Some((first, rest)) = argv.split_first() else {
        return Err(format!(
            "image {image:?} names no executable in the bin directory and the container has no command to run on the host"
        ));
    };
    Ok((resolve(first, bin_dir, path_var.as_deref())?, rest.to_vec()))
}

/// The program and arguments of `container` run from `image`, as the kubelet documents it:
/// no `command` and no `args`: Entrypoint + Cmd; `command` only: `command` (Entrypoint and Cmd
/// ignored); `args` only: Entrypoint + `args`; both: `command` + `args`. `$(VAR)` references are
/// expanded with `env`. The program is looked up inside the image root: an absolute path as
/// is, a relative one from the image's WorkingDir, a bare name in the directories of `PATH`
/// (the last `PATH` of `env`), symlinks followed inside the root.
pub fn image_command_line(
    container: &Value,
    image: &Unpacked,
    env: &[(String, String)],
) -> Result<(PathBuf, Vec<String>), String> {
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| super::env::expand(s, env))
                .collect()
        })
    };
    let command = strings(&container["command"]).filter(|c| !c.is_empty());
    let args = strings(&container["args"]).filter(|a| !a.is_empty());
    let config = &image.config;
    let argv: Vec<String> = match (command, args) {
        (None, None) => config
            .entrypoint
            .iter()
            .chain(&config.cmd)
            .cloned()
            .collect(),
        (Some(c), None) => c,
        (None, Some(a)) => config.entrypoint.iter().cloned().chain(a).collect(),
        (Some(c), Some(a)) => c.into_iter().chain(a).collect(),
    };
    let Some((first, rest)) = argv.split_first() else {
        return Err("no command specified".to_string());
    };
    Ok((find_in_image(first, image, env)?, rest.to_vec()))
}

/// The host path of the program `first` inside `image`: an absolute path as is, a relative one
/// from the image's WorkingDir, a bare name in the directories of `PATH` (the last `PATH` of
/// `env`), symlinks followed inside the root.
pub fn find_in_image(
    first: &str,
    image: &Unpacked,
    env: &[(String, String)],
) -> Result<PathBuf, String> {
    let config = &image.config;
    let not_found = || format!("exec: {first:?}: executable file not found in $PATH");
    let candidates: Vec<String> = if first.starts_with('/') {
        vec![first.to_string()]
    } else if first.contains('/') {
        vec![format!("{}/{first}", config.working_dir)]
    } else {
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{d}/{first}"))
            .collect()
    };
    for c in candidates {
        let host = resolve_in_root(&image.root, &c, true)?;
        if is_executable(&host) {
            return Ok(host);
        }
    }
    Err(not_found())
}

/// The PATH of a container whose image sets none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The user and group a container runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The effective security context field `field` of `container` (the container's, else the
/// pod's).
fn effective<'a>(pod: &'a Value, container: &'a Value, field: &str) -> &'a Value {
    let c = &container["securityContext"][field];
    if c.is_null() {
        &pod["spec"]["securityContext"][field]
    } else {
        c
    }
}

/// Who `container` of `pod` runs as with `image`: `runAsUser` / `runAsGroup` of the effective
/// security context, else the image's `User` (`uid[:gid]` or names from the root's
/// `/etc/passwd` and `/etc/group`; no group: the user's group in `/etc/passwd`, else 0).
/// `runAsNonRoot` is checked as the kubelet does; the error is its message, reported as
/// `CreateContainerConfigError`.
pub fn run_as(pod: &Value, container: &Value, image: &Unpacked) -> Result<RunAs, String> {
    let m = &pod["metadata"];
    let who = format!(
        "(pod: \"{}_{}({})\", container: {})",
        m["name"].as_str().unwrap_or(""),
        m["namespace"].as_str().unwrap_or(""),
        m["uid"].as_str().unwrap_or(""),
        container["name"].as_str().unwrap_or("")
    );
    let run_as_user = effective(pod, container, "runAsUser").as_u64();
    let run_as_group = effective(pod, container, "runAsGroup").as_u64();
    let non_root = effective(pod, container, "runAsNonRoot").as_bool() == Some(true);
    let (user, group) = match image.config.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image.config.user.as_str(), None),
    };
    let image_uid: Option<u32> = if user.is_empty() {
        Some(0)
    } else {
        user.parse().ok()
    };
    if non_root {
        match run_as_user {
            Some(0) => {
                return Err(format!(
                    "container's runAsUser breaks non-root policy {who}"
                ));
            }
            Some(_) => {}
            None => match image_uid {
                Some(0) => {
                    return Err(format!(
                        "container has runAsNonRoot and image will run as root {who}"
                    ));
                }
                None => {
                    return Err(format!(
                        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root {who}"
                    ));
                }
                Some(_) => {}
            },
        }
    }
    let passwd = std::fs::read_to_string(
        resolve_in_root(&image.root, "/etc/passwd", true).unwrap_or_default(),
    )
    .unwrap_or_default();
    let group_file = std::fs::read_to_string(
        resolve_in_root(&image.root, "/etc/group", true).unwrap_or_default(),
    )
    .unwrap_or_default();
    // (name, uid, gid) of each /etc/passwd line.
    let users: Vec<(&str, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                *f.first()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let gid_of_uid = |uid: u32| users.iter().find(|u| u.1 == uid).map_or(0, |u| u.2);
    if let Some(uid) = run_as_user {
        let uid = u32::try_from(uid).map_err(|_| format!("runAsUser {uid} is out of range"))?;
        let gid = match run_as_group {
            Some(g) => u32::try_from(g).map_err(|_| format!("runAsGroup {g} is out of range"))?,
            None => gid_of_uid(uid),
        };
        return Ok(RunAs { uid, gid });
    }
    let (uid, passwd_gid) = match image_uid {
        Some(uid) => (uid, gid_of_uid(uid)),
        None => users
            .iter()
            .find(|u| u.0 == user)
            .map(|u| (u.1, u.2))
            .ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?,
    };
    let gid = match (run_as_group, group) {
        (Some(g), _) => u32::try_from(g).map_err(|_| format!("runAsGroup {g} is out of range"))?,
        (None, Some(g)) => match g.parse() {
            Ok(g) => g,
            Err(_) => group_file
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.first() == Some(&g)).then(|| f.get(2)?.parse().ok())?
                })
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
        (None, None) => passwd_gid,
    };
    Ok(RunAs { uid, gid })
}

/// A program name from a command: an existing path as is; otherwise its file name in the
/// bin directory, then in PATH.
pub(super) fn resolve(
    program: &str,
    bin_dir: Option<&Path>,
    path_var: Option<&str>,
) -> Result<PathBuf, String> {
    let p = Path::new(program);
    if program.contains('/') && is_executable(p) {
        return Ok(p.to_path_buf());
    }
    let file = p.file_name().map(Path::new).unwrap_or(p);
    let host_path = std::env::var("PATH").unwrap_or_default();
    let dirs = bin_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(path_var.unwrap_or(&host_path)).collect::<Vec<_>>());
    for dir in dirs {
        let candidate = dir.join(file);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {program:?}: executable file not found in $PATH"
    ))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_names() {
        assert_eq!(image_name("alpine"), "alpine");
        assert_eq!(image_name("ghcr.io/org/sc-job:1.0"), "sc-job");
        assert_eq!(image_name("localhost:5000/sc-job@sha256:abc"), "sc-job");
        assert_eq!(image_name("sc-job:v1@sha256:abc"), "sc-job");
    }

    #[test]
    fn bin_dir_images_and_host_commands() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let env = vec![
            ("PATH".to_string(), std::env::var("PATH").unwrap()),
            ("X".to_string(), "1".to_string()),
        ];
        let bin = Some(dir.path());

        let c = json!({"image": "reg/tool:1", "args": ["run", "$(X)"]});
        assert_eq!(
            command_line(&c, bin, &env).unwrap(),
            (exe.clone(), vec!["run".to_string(), "1".to_string()])
        );
        let c = json!({"image": "tool", "command": ["/usr/local/bin/tool", "a"], "args": ["b"]});
        assert_eq!(
            command_line(&c, bin, &env).unwrap(),
            (exe.clone(), vec!["a".to_string(), "b".to_string()])
        );
        let c = json!({"image": "tool", "command": ["sh", "-c", "true"]});
        let (prog, args) = command_line(&c, bin, &env).unwrap();
        assert!(prog.ends_with("sh"));
        assert_eq!(args, ["-c", "true"]);

        let c = json!({"image": "alpine", "command": ["printenv"]});
        assert!(command_line(&c, bin, &env).unwrap().0.ends_with("printenv"));
        let c = json!({"image": "alpine", "args": ["echo", "hi"]});
        assert_eq!(command_line(&c, bin, &env).unwrap().1, ["hi"]);
        assert!(command_line(&json!({"image": "alpine"}), bin, &env).is_err());
        let c = json!({"image": "alpine", "command": ["no-such-program-xyz"]});
        assert!(
            command_line(&c, bin, &env)
                .unwrap_err()
                .contains("not found")
        );
    }

    fn unpacked(root: &Path, user: &str) -> Unpacked {
        Unpacked {
            digest: "sha256:00".into(),
            root: root.to_path_buf(),
            config: super::super::oci::ImageConfig {
                user: user.into(),
                ..Default::default()
            },
            archive: PathBuf::new(),
        }
    }

    #[test]
    fn users_and_run_as_non_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1001:1002::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let pod = |sc: Value| json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"securityContext": sc}});
        let c = json!({"name": "main"});
        let run = |sc: Value, user: &str| run_as(&pod(sc), &c, &unpacked(dir.path(), user));
        let ids = |uid, gid| Ok(RunAs { uid, gid });
        assert_eq!(run(json!({}), "65532:65532"), ids(65532, 65532));
        assert_eq!(run(json!({}), "app"), ids(1001, 1002));
        assert_eq!(run(json!({}), "1001"), ids(1001, 1002));
        assert_eq!(run(json!({}), "app:staff"), ids(1001, 50));
        assert_eq!(run(json!({}), ""), ids(0, 0));
        assert_eq!(run(json!({"runAsUser": 7}), "app"), ids(7, 0));
        assert_eq!(
            run(json!({"runAsUser": 7, "runAsGroup": 8}), "app"),
            ids(7, 8)
        );
        assert!(
            run(json!({}), "nobody")
                .unwrap_err()
                .contains("unable to find user nobody")
        );
        let who = "(pod: \"p_ns(u1)\", container: main)";
        let non_root = json!({"runAsNonRoot": true});
        assert_eq!(
            run(non_root.clone(), "0:0").unwrap_err(),
            format!("container has runAsNonRoot and image will run as root {who}")
        );
        assert_eq!(
            run(non_root.clone(), "app").unwrap_err(),
            format!(
                "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root {who}"
            )
        );
        assert_eq!(
            run(json!({"runAsNonRoot": true, "runAsUser": 0}), "65532").unwrap_err(),
            format!("container's runAsUser breaks non-root policy {who}")
        );
        assert_eq!(run(non_root, "65532"), ids(65532, 0));
        // The container's security context wins over the pod's.
        let c = json!({"name": "main", "securityContext": {"runAsNonRoot": false}});
        assert!(
            run_as(
                &pod(json!({"runAsNonRoot": true})),
                &c,
                &unpacked(dir.path(), "")
            )
            .is_ok()
        );
    }

    #[test]
    fn image_programs_are_looked_up_in_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        let exe = dir.path().join("usr/bin/tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("usr/bin", dir.path().join("bin")).unwrap();
        let mut img = unpacked(dir.path(), "");
        img.config.entrypoint = vec!["/bin/tool".into()];
        img.config.cmd = vec!["serve".into()];
        let env = vec![("PATH".to_string(), "/sbin:/bin".to_string())];
        assert_eq!(
            image_command_line(&json!({}), &img, &env).unwrap(),
            (exe.clone(), vec!["serve".to_string()])
        );
        let c = json!({"command": ["tool"], "args": []});
        assert_eq!(image_command_line(&c, &img, &env).unwrap(), (exe, vec![]));
        // The host's programs are not looked at.
        let c = json!({"command": ["printenv"]});
        assert!(
            image_command_line(&c, &img, &env)
                .unwrap_err()
                .contains("not found")
        );
        img.config.entrypoint.clear();
        img.config.cmd.clear();
        assert!(image_command_line(&json!({}), &img, &env).is_err());
    }
}
