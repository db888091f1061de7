//! `kubesim-probe`: a pod workload for tests. It connects with kube-rs `Config::infer()` (so,
//! in a kubesim pod, with the pod's ServiceAccount kubeconfig), then lists each resource named
//! on the command line in its namespace and prints one line per resource:
//! `<resource>: ok <count>` or `<resource>: denied <code> <reason>`.

use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = kube::Config::infer().await?;
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)?;
    println!("namespace: {namespace}");
    for resource in std::env::args().skip(1) {
        let (group, plural) = resource
            .split_once('.')
            .map_or(("", resource.as_str()), |(p, g)| (g, p));
        let ar = ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            kind: String::new(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => println!("{resource}: ok {}", list.items.len()),
            Err(kube::Error::Api(s)) => println!("{resource}: denied {} {}", s.code, s.reason),
            Err(e) => println!("{resource}: error {e}"),
        }
    }
    Ok(())
}
