//! `sc-agent show NAME`: a connection's spec, status and journal of runs.

use super::args::NameArgs;
use super::block_on;
use super::list::row;
use super::output::print_value;
use super::snapshot::{Snapshot, not_requested};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `sc-agent show NAME`.
pub fn run(args: &NameArgs) -> ExitCode {
    block_on(async {
        let c = &args.common;
        let (client, snapshot) = Snapshot::connect(c, false).await?;
        let name = &args.name;
        let m = snapshot.metadata(name);
        if m.is_none() && !snapshot.is_requested(name) {
            return Err(not_requested(name, &c.namespace));
        }
        let r = row(name, &snapshot);
        // A connection the agent ignores has no status of its own: say why.
        let ignored = snapshot.ignored_for(name).map(|owner| {
            let message = if owner.is_empty() {
                format!("connections.{name}: the name has no letter or digit, so no metadata ConfigMap can record it: the agent ignores it")
            } else {
                format!(
                    "connections.{name}: maps to the same metadata ConfigMap {} (and Secret name) as connection {owner}: the agent ignores it",
                    crate::contract::metadata_name(name)
                )
            };
            json!({"phase": "Failed", "error": {
                "reason": "NameClash",
                "message": message,
                "remedy": "rename the connection (names that differ only in '_' or case map to the same objects) and upgrade the release",
            }})
        });
        let v = json!({
            "name": name,
            "phase": r["phase"],
            "metadata": m.map(|m| format!("{}/{}", c.namespace, m.configmap)),
            "spec": m.and_then(|m| m.spec()),
            "requested": m.and_then(|m| m.requested.clone()),
            "status": match m.and_then(|m| m.status.clone()) {
                Some(status) => json!(status.as_ref()),
                None => ignored.unwrap_or(Value::Null),
            },
            "drift": m.and_then(|m| m.drift.clone()),
            "journal": m.map(|m| m.journal.clone()).unwrap_or_default(),
        });
        // Workload identity and prerequisites (the connection without its protected inputs).
        let conn = snapshot.requests.as_ref().and_then(|r| {
            crate::workloads::public_connections(&r.connections)
                .into_iter()
                .find(|k| k.name() == name)
        });
        let extra = crate::report::show(&client, &c.namespace, conn.as_ref()).await;
        let mut v = v;
        for key in [
            "cluster",
            "federatedCredential",
            "prerequisites",
            "brokenWorkloads",
            "brokenWorkloadsUnchecked",
        ] {
            if let Some(x) = extra.get(key) {
                v[key] = x.clone();
            }
        }
        match c.output.structured() {
            Some(f) => print_value(&v, f)?,
            None => {
                print_show(&v);
                crate::report::print_show(&extra);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_show(v: &Value) {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    println!("Name:       {}", s(&v["name"]));
    println!("Phase:      {}", s(&v["phase"]));
    match v["metadata"].as_str() {
        Some(m) => println!("Metadata:   ConfigMap {m}"),
        None => println!("Metadata:   none yet (no run of sc-job has recorded the connection)"),
    }
    let spec = &v["spec"];
    println!("Namespace:  {}", s(&spec["namespace"]));
    println!("Target:     {}", s(&spec["targetType"]));
    println!("Auth:       {}", s(&spec["authType"]));
    println!("Client:     {}", s(&spec["clientType"]));
    if let Some(r) = v["requested"].as_object() {
        println!(
            "Requested:  revision {}, hash {}",
            r.get("revision").unwrap_or(&Value::Null),
            r.get("hash").and_then(Value::as_str).unwrap_or("")
        );
    }
    let status = &v["status"];
    if status.is_object() {
        println!(
            "Applied:    {} (revision {}, at {})",
            status["appliedHash"].as_str().unwrap_or("nothing yet"),
            status["revision"],
            s(&status["time"])
        );
        if let Some(objects) = status["objects"].as_array().filter(|o| !o.is_empty()) {
            println!("Objects:");
            for o in objects {
                println!(
                    "  {} {}/{}",
                    s(&o["kind"]),
                    s(&o["namespace"]),
                    s(&o["name"])
                );
            }
        }
        if status["error"].is_object() {
            let e = &status["error"];
            println!("Error:      {}: {}", s(&e["reason"]), s(&e["message"]));
            println!("Remedy:     {}", s(&e["remedy"]));
        }
    }
    let drift = &v["drift"];
    let current = v["requested"]["hash"].as_str().unwrap_or_default();
    if drift.is_object() && drift["hash"].as_str() == Some(current) {
        if let Some(objects) = drift["objects"].as_array().filter(|o| !o.is_empty()) {
            println!("Drift:");
            for o in objects {
                match serde_json::from_value::<crate::contract::DriftedObject>(o.clone()) {
                    Ok(o) => println!("  {o}"),
                    Err(_) => println!("  {o}"),
                }
            }
        }
        if let Some(repairs) = drift["repairs"].as_array().filter(|r| !r.is_empty()) {
            println!("Repairs:    {} in the current window", repairs.len());
        }
        let e = &drift["contested"];
        if e.is_object() {
            println!("Error:      {}: {}", s(&e["reason"]), s(&e["message"]));
            println!("Remedy:     {}", s(&e["remedy"]));
        }
    }
    if let Some(journal) = v["journal"].as_array().filter(|j| !j.is_empty()) {
        println!("Journal:");
        for e in journal {
            let err = if e["error"].is_object() {
                format!(
                    ": {}: {}",
                    s(&e["error"]["reason"]),
                    s(&e["error"]["message"])
                )
            } else {
                String::new()
            };
            println!(
                "  {}  {}  {}{err}",
                s(&e["time"]),
                s(&e["job"]),
                s(&e["result"])
            );
        }
    }
}
