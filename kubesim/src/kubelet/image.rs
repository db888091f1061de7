//! From a container spec to a host command line. A container whose image name (the last path
//! segment, without tag or digest) names an executable in the bin directory runs that
//! executable: it is the image's entrypoint, `command` replaces it (a `command[0]` naming the
//! same executable keeps the bin-directory binary) and `args` follow. Any other image has no
//! entrypoint of its own: `command` (or, without one, `args`) runs on the host, looked up in
//! the host's PATH.

use std::path::{Path, PathBuf};

use serde_json::Value;

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

/// A program name from a command: an existing path as is; otherwise its file name in the
/// bin directory, then in PATH.
fn resolve(
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
}
