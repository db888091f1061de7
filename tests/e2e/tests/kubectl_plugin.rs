//! `kubectl sc`: sc-agent as a kubectl plugin. With a directory holding the `kubectl-sc` link
//! to sc-agent on PATH (what `make build` makes in target/debug), the real kubectl 1.33 and
//! 1.37 find the plugin, list it, and run `kubectl sc list` against an installed release.

use sc_e2e::{Cluster, Helm, binary, secret_value};
use serde_json::{Value, json};

#[test]
fn kubectl_runs_sc_agent_as_its_sc_plugin() {
    let c = Cluster::start();
    let apps = c.create_namespace("apps");
    let key = secret_value("account-key");
    c.remember_secret(&key);
    let settings = json!({"connections": {"plugin_blob": {
        "namespace": apps, "targetType": "storage-blob", "authType": "secret",
        "clientType": "python", "parameters": {"accountName": "pluginstore"},
    }}});
    let protected = json!({"connections": {"plugin_blob": {"secrets": {"accountKey": key}}}});
    let files = [
        c.write_values("settings", &settings),
        c.write_values("protected", &protected),
    ];
    c.helm_upgrade(Helm::V3, &[&files[0], &files[1]], &[]).ok();
    c.wait_job_gone();
    let rel = c.release_ns();

    // The plugin directory: only the link, as `make build` makes it beside sc-agent.
    let plugins = c.dir().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let link = plugins.join("kubectl-sc");
    std::os::unix::fs::symlink(binary("sc-agent"), &link).unwrap();

    for kubectl in ["kubectl-1.33", "kubectl-1.37"] {
        let run = |args: &[&str]| {
            let mut cmd = c.tool_command(kubectl);
            cmd.env("PATH", &plugins).args(args);
            sc_e2e::run_command(cmd, &format!("{kubectl} {}", args.join(" ")), None)
        };

        // `kubectl plugin list` finds it (it may warn about other kubectl-* on PATH).
        let listed = run(&["plugin", "list"]);
        assert!(
            listed.stdout.contains(&link.display().to_string()),
            "{kubectl}: {listed:?}"
        );

        let list = run(&["sc", "list", "-n", &rel]);
        let table = list.ok();
        let header = table.lines().next().unwrap_or_default();
        assert!(header.starts_with("NAME"), "{kubectl}: {table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("plugin_blob "))
            .unwrap_or_else(|| panic!("{kubectl}: no row of plugin_blob:\n{table}"));
        for cell in [apps.as_str(), "storage-blob", "secret", "python", "Ready"] {
            assert!(
                row.split_whitespace().any(|w| w == cell),
                "{kubectl}: {row}"
            );
        }

        let json_out = run(&["sc", "list", "-n", &rel, "-o", "json"]);
        let rows: Value = serde_json::from_str(json_out.ok()).unwrap();
        assert_eq!(rows[0]["name"], "plugin_blob", "{kubectl}");
        assert_eq!(rows[0]["phase"], "Ready", "{kubectl}");

        // Usage and help name the plugin as it is typed.
        let help = run(&["sc", "list", "--help"]);
        assert!(
            help.ok().contains("Usage: kubectl sc list"),
            "{kubectl}: {help:?}"
        );
        for out in [&listed, &list, &json_out, &help] {
            assert!(!out.stdout.contains(&key) && !out.stderr.contains(&key));
        }
    }
    c.leak_scan(&["plugin_blob"]);
}
