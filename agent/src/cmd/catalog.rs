//! `sc-agent catalog`: the documented configuration keys per target, auth type and client type.

use super::EXIT_INVALID;
use super::output::{Structured, render};
use clap::{Args, ValueEnum};
use sc_model::{AuthType, ClientType, KeySpec, catalog};
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;

/// Output formats of `catalog`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CatalogFormat {
    /// Aligned columns.
    Table,
    /// A JSON array of keys.
    Json,
    /// The same array as YAML.
    Yaml,
}

/// Arguments of `sc-agent catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Only this target (storage-blob, sql, keyvault, ...).
    #[arg(long)]
    pub target: Option<String>,
    /// Only this auth type (secret, servicePrincipal, workloadIdentity, keyvaultCsi).
    #[arg(long)]
    pub auth: Option<String>,
    /// Only this client type (none, python, django, dotnet, java, springBoot, kafkaSpringBoot, nodejs, go, php, ruby).
    #[arg(long)]
    pub client: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CatalogFormat::Table)]
    pub output: CatalogFormat,
    /// Print the enumerations of target, auth and client types that chart/values.schema.json
    /// holds (JSON), and nothing else.
    #[arg(long, conflicts_with_all = ["target", "auth", "client"])]
    pub schema_enums: bool,
}

fn key_json(k: &KeySpec) -> Value {
    let mut v = json!({
        "target": k.target,
        "authType": k.auth_type.as_str(),
        "clientType": k.client_type.as_str(),
        "name": k.name,
        "secret": k.secret,
        "description": k.description,
        "value": k.template.to_string(),
    });
    if let Some(d) = &k.documented_name {
        v["documentedName"] = json!(d);
    }
    v
}

/// Runs `sc-agent catalog`.
pub fn run(args: &CatalogArgs) -> ExitCode {
    if args.schema_enums {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::schema::enums()).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let cat = catalog();
    let mut errors = Vec::new();
    let target = args.target.as_deref().and_then(|t| {
        let r = cat.resolve_target(t);
        if r.is_none() {
            let hint = sc_model::error::closest(t, cat.targets().iter().map(String::as_str))
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            errors.push(format!(
                "--target: unknown target {t:?}{hint}; the targets are {}",
                cat.targets().join(", ")
            ));
        }
        r
    });
    let auth = args.auth.as_deref().and_then(|a| {
        let r = AuthType::parse(a);
        if r.is_none() {
            errors.push(format!("--auth: unknown auth type {a:?}; use secret, servicePrincipal, workloadIdentity or keyvaultCsi"));
        }
        r
    });
    let client = args.client.as_deref().and_then(|c| {
        let r = ClientType::parse(c);
        if r.is_none() {
            let all: Vec<&str> = ClientType::ALL.iter().map(|c| c.as_str()).collect();
            errors.push(format!(
                "--client: unknown client type {c:?}; use one of {}",
                all.join(", ")
            ));
        }
        r
    });
    if !errors.is_empty() {
        for e in errors {
            eprintln!("{e}");
        }
        return ExitCode::from(EXIT_INVALID);
    }
    let keys: Vec<&KeySpec> = cat
        .all_keys()
        .iter()
        .filter(|k| target.is_none_or(|t| k.target == t))
        .filter(|k| auth.is_none_or(|a| k.auth_type == a))
        .filter(|k| client.is_none_or(|c| k.client_type == c))
        .collect();
    let mut out = std::io::stdout().lock();
    let result = match args.output {
        CatalogFormat::Json | CatalogFormat::Yaml => {
            let arr = Value::Array(keys.iter().map(|k| key_json(k)).collect());
            let format = match args.output {
                CatalogFormat::Yaml => Structured::Yaml,
                _ => Structured::Json,
            };
            match render(&arr, format) {
                Ok(text) => out.write_all(text.as_bytes()),
                Err(e) => {
                    eprintln!("cannot format the catalog: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        CatalogFormat::Table => write_table(&mut out, &keys, auth, target),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the catalog: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_table(
    out: &mut impl Write,
    keys: &[&KeySpec],
    auth: Option<AuthType>,
    target: Option<&str>,
) -> std::io::Result<()> {
    let header = ["TARGET", "AUTH", "CLIENT", "NAME", "SECRET", "VALUE"];
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|k| {
            [
                k.target.clone(),
                k.auth_type.as_str().to_string(),
                k.client_type.as_str().to_string(),
                k.name.clone(),
                if k.secret { "yes" } else { "no" }.to_string(),
                k.template.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; 6]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, header)?;
    for r in &rows {
        line(out, [&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]])?;
    }
    if auth.is_none_or(|a| a == AuthType::KeyvaultCsi)
        && target.is_none_or(|t| t == sc_model::catalog::KEYVAULT_TARGET)
    {
        writeln!(
            out,
            "\nkeyvault with keyvaultCsi produces a SecretProviderClass and no keys of its own (see sc-agent plan)"
        )?;
    }
    Ok(())
}
