//! The bad-input corpus (corpus/bad-input.json, described in tests/e2e/BAD-INPUT.md) through
//! the real chart, as values files and as Arc-style flat `--set-string` settings:
//!
//! - `schema`: every case the schema can tell is refused by `helm template` (helm 3 and helm 4)
//!   with an error naming the key; every other case passes the schema, renders the same
//!   requests in both forms, and `sc-agent plan` (no cluster) refuses it naming the key.
//! - `cluster`: the cases only sc-model can tell, batched into a few upgrades of one release on
//!   kubesim next to a healthy connection: each is `Failed` in its status and in `sc-agent
//!   show` and named in sc-job's log, at the same key path as `sc-agent plan`; no log holds a
//!   panic, the agent keeps running, and the healthy connection stays Ready with unchanged
//!   objects.

use sc_e2e::corpus::{self, Case, Stage};
use sc_e2e::{Helm, Out, chart_dir, run_command, tool, write_private};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// How many threads run helm and sc-agent at once.
const PARALLEL: usize = 4;

/// The input files of one form of a case.
struct Form {
    label: &'static str,
    args: Vec<String>,
}

/// The values-file form and, when the case has one, the flat form of `case`, with its files
/// written under `dir`.
fn forms(case: &Case, dir: &Path) -> Vec<Form> {
    let mut out = Vec::new();
    let protected = case.protected().map(|p| {
        let path = dir.join(format!("{}-protected.json", case.id));
        write_private(&path, &p.to_string());
        vec!["-f".to_string(), path.display().to_string()]
    });
    if case.values.is_some() {
        let settings = dir.join(format!("{}-settings.json", case.id));
        write_private(&settings, &case.public().to_string());
        out.push(Form {
            label: "values files",
            args: [vec!["-f".to_string(), settings.display().to_string()]]
                .into_iter()
                .chain(protected.clone())
                .flatten()
                .collect(),
        });
    }
    if let Some(flat) = case.flat_settings() {
        let mut args = Vec::new();
        for s in flat {
            args.push("--set-string".to_string());
            args.push(s);
        }
        args.extend(protected.into_iter().flatten());
        out.push(Form {
            label: "flat settings",
            args,
        });
    }
    out
}

/// `helm template` of the chart with `args` (`only`: one template).
fn template(helm: Helm, home: &Path, args: &[String], only: Option<&str>) -> Out {
    let mut cmd = Command::new(tool(helm.tool()));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .args([
            "template",
            "sc-extension",
            &chart_dir().display().to_string(),
            "-n",
            "sc-system",
        ])
        .args(args);
    if let Some(t) = only {
        cmd.args(["--show-only", t]);
    }
    run_command(cmd, &format!("{} template", helm.tool()), None)
}

/// `sc-agent plan` of the values-file form.
fn plan(case: &Case, dir: &Path) -> Out {
    let mut cmd = Command::new(sc_e2e::binary("sc-agent"));
    cmd.arg("plan").args(&forms(case, dir)[0].args);
    run_command(cmd, &format!("sc-agent plan ({})", case.id), None)
}

/// Runs `check` on every case, `PARALLEL` at a time; returns the failures.
fn each_case(cases: &[Case], check: impl Fn(&Case) -> Result<(), String> + Sync) -> Vec<String> {
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().expect("lock");
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = cases.get(i) else { break };
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(case)))
                            .unwrap_or_else(|_| Err("the check panicked".to_string()));
                    if let Err(e) = result {
                        failures
                            .lock()
                            .expect("lock")
                            .push(format!("case {}: {e}", case.id));
                    }
                }
            });
        }
    });
    failures.into_inner().expect("lock")
}

/// Flattens the output for a message (control characters escaped, bounded).
fn shown(text: &str) -> String {
    let t: String = text.escape_debug().collect();
    t.chars().take(1500).collect()
}

#[test]
fn corpus_is_large_and_well_formed() {
    let cases = corpus::load();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut names = std::collections::BTreeMap::new();
    for c in &cases {
        assert!(!c.key.is_empty(), "case {}: no key", c.id);
        if c.stage == Stage::Cluster {
            let name = c
                .name
                .as_deref()
                .expect("a cluster case is about a connection");
            let compact = sc_model::names::compact_name(name);
            if let Some(other) = names.insert(compact.clone(), c.id.clone()) {
                panic!(
                    "cases {other} and {} map to the same metadata ConfigMap",
                    c.id
                );
            }
            assert!(
                c.values.is_some(),
                "case {}: a cluster case needs values",
                c.id
            );
        }
    }
    let flat = cases.iter().filter(|c| c.flat_settings().is_some()).count();
    assert!(flat >= 100, "only {flat} cases are tried as flat settings");
}

#[test]
fn schema() {
    let cases = corpus::load();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("creating HOME");
    let failures = each_case(&cases, |case| {
        let mut rendered: Option<String> = None;
        for helm in [Helm::V3, Helm::V4] {
            for form in forms(case, dir.path()) {
                let what = format!("{} with {}", helm.tool(), form.label);
                match case.stage {
                    Stage::Helm | Stage::Schema => {
                        let out = template(helm, &home, &form.args, None);
                        if out.success() {
                            return Err(format!("{what}: helm template accepted it"));
                        }
                        let text = out.all();
                        if case.stage == Stage::Schema
                            && !text.contains("don't meet the specifications of the schema")
                        {
                            return Err(format!("{what}: not a schema error: {}", shown(&text)));
                        }
                        if !corpus::names_key(&text, &case.key) {
                            return Err(format!(
                                "{what}: the error does not name {}: {}",
                                case.key_path(),
                                shown(&text)
                            ));
                        }
                        if text.contains("panic") {
                            return Err(format!("{what}: helm panicked: {}", shown(&text)));
                        }
                        for s in &case.secrets {
                            if text.contains(s.as_str()) {
                                return Err(format!("{what}: the error shows a secret value"));
                            }
                        }
                    }
                    Stage::Cluster => {
                        let out =
                            template(helm, &home, &form.args, Some("templates/requests.yaml"));
                        if !out.success() {
                            return Err(format!(
                                "{what}: the schema refused a case it should pass to the cluster: {}",
                                shown(&out.all())
                            ));
                        }
                        match &rendered {
                            None => rendered = Some(out.stdout.clone()),
                            Some(first) if *first != out.stdout => {
                                return Err(format!(
                                    "{what}: the requests differ from the values-file form:\n{}\nvs\n{}",
                                    shown(first),
                                    shown(&out.stdout)
                                ));
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        if case.stage == Stage::Cluster {
            let out = plan(case, dir.path());
            let text = out.all();
            if case.plan_accepts {
                if !out.success() {
                    return Err(format!("sc-agent plan refused it: {}", shown(&text)));
                }
            } else if out.code != 2 || !text.contains(&case.key_path()) {
                return Err(format!(
                    "sc-agent plan (exit {}) does not name {}: {}",
                    out.code,
                    case.key_path(),
                    shown(&text)
                ));
            }
            if text.contains("panicked") {
                return Err(format!("sc-agent plan panicked: {}", shown(&text)));
            }
        }
        Ok(())
    });
    let by_stage = |s: Stage| cases.iter().filter(|c| c.stage == s).count();
    eprintln!(
        "bad-input corpus: {} cases ({} by helm's flag parser, {} by the schema, {} in the cluster); {} also as flat settings",
        cases.len(),
        by_stage(Stage::Helm),
        by_stage(Stage::Schema),
        by_stage(Stage::Cluster),
        cases.iter().filter(|c| c.flat_settings().is_some()).count()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
