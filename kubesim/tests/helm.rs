//! helm 3.18 and helm 4.1 against kubesim on a chart without hooks: install, upgrade (a removed
//! value disappears), rollback, list/status/history, uninstall.

use kubesim::testing::{CmdOutput, run};
use kubesim::{Kubesim, Options};

fn chart() -> String {
    format!("{}/tests/charts/demo", env!("CARGO_MANIFEST_DIR"))
}

async fn ok(ks: &Kubesim, tool: &str, args: &[&str]) -> String {
    let out: CmdOutput = run(ks, tool, args).await;
    out.ok(&format!("{tool} {}", args.join(" "))).to_string()
}

async fn config_data(ks: &Kubesim) -> String {
    ok(
        ks,
        "kubectl",
        &[
            "-n",
            "apps",
            "get",
            "cm",
            "rel-config",
            "-o",
            "jsonpath={.data}",
        ],
    )
    .await
}

async fn lifecycle(helm: &str) {
    let ks = Kubesim::start(Options::default())
        .await
        .expect("kubesim starts");
    let chart = chart();
    let installed = ok(
        &ks,
        helm,
        &[
            "install",
            "rel",
            &chart,
            "-n",
            "apps",
            "--create-namespace",
            "--set",
            "labels.team=blue",
        ],
    )
    .await;
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        config_data(&ks).await,
        r#"{"extra":"present","greeting":"hello"}"#
    );
    let svc = ok(
        &ks,
        "kubectl",
        &[
            "-n",
            "apps",
            "get",
            "svc",
            "rel-svc",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].targetPort}",
        ],
    )
    .await;
    assert!(svc.starts_with("10.96.") && svc.ends_with(" 8080"), "{svc}");
    let owner = ok(
        &ks,
        "kubectl",
        &[
            "-n",
            "apps",
            "get",
            "cm",
            "rel-config",
            "-o",
            "jsonpath={.metadata.annotations.meta\\.helm\\.sh/release-name}",
        ],
    )
    .await;
    assert_eq!(owner, "rel");

    // Upgrade: a value and a label removed from the chart's output disappear.
    ok(
        &ks,
        helm,
        &[
            "upgrade",
            "rel",
            &chart,
            "-n",
            "apps",
            "--set",
            "data.extra=null",
            "--set",
            "data.greeting=hi",
        ],
    )
    .await;
    assert_eq!(config_data(&ks).await, r#"{"greeting":"hi"}"#);
    let labels = ok(
        &ks,
        "kubectl",
        &[
            "-n",
            "apps",
            "get",
            "cm",
            "rel-config",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
    )
    .await;
    assert!(!labels.contains("team"), "{labels}");

    ok(&ks, helm, &["rollback", "rel", "1", "-n", "apps"]).await;
    assert_eq!(
        config_data(&ks).await,
        r#"{"extra":"present","greeting":"hello"}"#
    );

    let list = ok(&ks, helm, &["list", "-n", "apps"]).await;
    let row = list
        .lines()
        .find(|l| l.starts_with("rel"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("deployed") && row.contains("demo-0.1.0"),
        "{list}"
    );
    let history = ok(&ks, helm, &["history", "rel", "-n", "apps"]).await;
    let statuses: Vec<&str> = history
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(2).unwrap_or_default().trim())
        .collect();
    assert_eq!(
        statuses,
        ["superseded", "superseded", "deployed"],
        "{history}"
    );
    let status = ok(&ks, helm, &["status", "rel", "-n", "apps"]).await;
    assert!(
        status.contains("REVISION: 3") && status.contains("STATUS: deployed"),
        "{status}"
    );

    ok(&ks, helm, &["uninstall", "rel", "-n", "apps", "--wait"]).await;
    let left = ok(
        &ks,
        "kubectl",
        &["-n", "apps", "get", "cm,svc,secret", "-o", "name"],
    )
    .await;
    assert!(
        !left.contains("rel-") && !left.contains("sh.helm.release"),
        "{left}"
    );
    let list = ok(&ks, helm, &["list", "-n", "apps"]).await;
    assert!(!list.contains("rel"), "{list}");
}

#[tokio::test]
async fn helm3_install_upgrade_rollback_uninstall() {
    lifecycle("helm3").await;
}

#[tokio::test]
async fn helm4_install_upgrade_rollback_uninstall() {
    lifecycle("helm4").await;
}
