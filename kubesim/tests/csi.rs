//! The Secrets Store CSI driver as a pod sees it, driven with kubectl 1.37: a pod mounting a
//! `secrets-store.csi.k8s.io` volume waits (FailedMount) on a cluster without the driver's
//! CSIDriver, then for its SecretProviderClass, then for the fake Key Vault's value; once
//! mounted it reads the object's file, the class's `secretObjects` are synced into a Secret
//! with the driver's label and owned by the pod, and the pod's `envFrom` of that Secret works.
//! The synced Secret goes with the last pod mounting the class.

use std::time::Duration;

use kubesim::testing::{kubectl, run_with_stdin, wait_until};
use kubesim::{Kubesim, Options};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

const CRD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/e2e/manifests/secretproviderclass-crd.yaml"
));

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  restartPolicy: Never
  containers:
    - name: main
      image: busybox:1.36
      command: ["sh", "-c", "echo file=$(cat /mnt/secrets-store/db-password); echo env=$DB_PASSWORD; sleep 3600"]
      envFrom:
        - secretRef:
            name: app-secret
      volumeMounts:
        - name: secrets-store
          mountPath: /mnt/secrets-store
          readOnly: true
  volumes:
    - name: secrets-store
      csi:
        driver: secrets-store.csi.k8s.io
        readOnly: true
        volumeAttributes:
          secretProviderClass: app-kv
"#;

const CSI_DRIVER: &str = r#"
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata:
  name: secrets-store.csi.k8s.io
spec:
  podInfoOnMount: true
  attachRequired: false
  volumeLifecycleModes: [Ephemeral]
"#;

const SPC: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app-kv
spec:
  provider: azure
  parameters:
    usePodIdentity: "false"
    keyvaultName: app-vault
    tenantId: 66666666-7777-8888-9999-000000000000
    objects: |
      array:
        - |
          objectName: db-password
          objectType: secret
          objectVersion: ""
  secretObjects:
    - secretName: app-secret
      type: Opaque
      labels:
        app: demo
      data:
        - objectName: db-password
          key: DB_PASSWORD
"#;

async fn apply(ks: &Kubesim, yaml: &str) {
    run_with_stdin(ks, "kubectl", &["apply", "-f", "-"], Some(yaml))
        .await
        .ok("kubectl apply");
}

async fn get_json(ks: &Kubesim, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(kubectl(ks, &a).await.ok("kubectl get")).expect("JSON")
}

/// Wait for a FailedMount event of pod `pod` whose message contains `text`; its message.
async fn failed_mount(ks: &Kubesim, pod: &str, text: &str) -> String {
    wait_until(
        WAIT,
        &format!("a FailedMount event with {text:?}"),
        || async {
            let events = get_json(ks, &["events", "-n", "default"]).await;
            events["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    e["reason"] == "FailedMount"
                        && e["type"] == "Warning"
                        && e["involvedObject"]["name"] == pod
                        && e["source"]["component"] == "kubelet"
                })
                .filter_map(|e| e["message"].as_str())
                .find(|m| m.contains(text))
                .map(str::to_string)
        },
    )
    .await
}

async fn pod_waiting_reason(ks: &Kubesim, pod: &str) -> (String, String) {
    let p = get_json(ks, &["pod", pod, "-n", "default"]).await;
    (
        p["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_store_csi_volume_mounts_and_syncs_its_secret() {
    let ks = Kubesim::start(Options::default()).await.unwrap();
    apply(&ks, CRD).await;
    kubectl(
        &ks,
        &[
            "wait",
            "--for=condition=Established",
            "crd/secretproviderclasses.secrets-store.csi.x-k8s.io",
            "--timeout=30s",
        ],
    )
    .await
    .ok("kubectl wait crd");
    apply(&ks, POD).await;

    // No CSIDriver: the kubelet knows no such driver, the pod waits in ContainerCreating.
    let m = failed_mount(
        &ks,
        "app",
        "not found in the list of registered CSI drivers",
    )
    .await;
    assert_eq!(
        m,
        "MountVolume.SetUp failed for volume \"secrets-store\" : kubernetes.io/csi: mounter.SetUpAt \
         failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of \
         registered CSI drivers"
    );
    assert_eq!(
        pod_waiting_reason(&ks, "app").await,
        ("Pending".to_string(), "ContainerCreating".to_string())
    );

    // The driver is installed: its SecretProviderClass is missing.
    apply(&ks, CSI_DRIVER).await;
    let m = failed_mount(&ks, "app", "failed to get secretproviderclass").await;
    assert_eq!(
        m,
        "MountVolume.SetUp failed for volume \"secrets-store\" : rpc error: code = Unknown desc = \
         failed to get secretproviderclass default/app-kv, error: \
         SecretProviderClass.secrets-store.csi.x-k8s.io \"app-kv\" not found"
    );

    // The class exists, the vault has no such object: the provider's not-found error.
    apply(&ks, SPC).await;
    let m = failed_mount(&ks, "app", "SecretNotFound").await;
    assert!(
        m.contains("objectName:db-password") && m.contains("Secret kubesim-system/app-vault"),
        "{m}"
    );
    assert_eq!(
        pod_waiting_reason(&ks, "app").await.1,
        "ContainerCreating",
        "no Secret is synced before the mount succeeds"
    );
    let secrets = get_json(&ks, &["secrets", "-n", "default"]).await;
    assert!(
        !secrets.to_string().contains("app-secret"),
        "nothing synced yet: {secrets}"
    );

    // Seeding the fake Key Vault: the mount succeeds.
    kubectl(&ks, &["create", "namespace", "kubesim-system"])
        .await
        .ok("create namespace");
    kubectl(
        &ks,
        &[
            "create",
            "secret",
            "generic",
            "app-vault",
            "-n",
            "kubesim-system",
            "--from-literal=db-password=s3cr3t-value",
        ],
    )
    .await
    .ok("create secret");
    let logs = wait_until(WAIT, "the pod's output", || async {
        let out = kubectl(&ks, &["logs", "app", "-n", "default"]).await;
        (out.success() && out.stdout.contains("env=")).then_some(out.stdout)
    })
    .await;
    assert_eq!(logs, "file=s3cr3t-value\nenv=s3cr3t-value\n");
    assert_eq!(pod_waiting_reason(&ks, "app").await.0, "Running");

    // The synced Secret: the driver's label, the class's labels, owned by the pod.
    let s = get_json(
        &ks,
        &[
            "secret",
            "app-secret",
            "-n",
            "default",
            "--show-managed-fields",
        ],
    )
    .await;
    assert_eq!(
        s["metadata"]["labels"]["secrets-store.csi.k8s.io/managed"],
        "true"
    );
    assert_eq!(s["metadata"]["labels"]["app"], "demo");
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"]["DB_PASSWORD"], "czNjcjN0LXZhbHVl");
    let pod = get_json(&ks, &["pod", "app", "-n", "default"]).await;
    let owners = s["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(owners.len(), 1, "{s}");
    assert_eq!(owners[0]["kind"], "Pod");
    assert_eq!(owners[0]["uid"], pod["metadata"]["uid"]);
    let managers: Vec<&str> = s["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["secrets-store-csi-driver"]);

    // The last pod mounting the class gone, the synced Secret goes too.
    kubectl(
        &ks,
        &["delete", "pod", "app", "-n", "default", "--wait=true"],
    )
    .await
    .ok("delete pod");
    wait_until(WAIT, "the synced Secret removed", || async {
        let out = kubectl(&ks, &["get", "secret", "app-secret", "-n", "default"]).await;
        (!out.success() && out.stderr.contains("NotFound")).then_some(())
    })
    .await;
}
