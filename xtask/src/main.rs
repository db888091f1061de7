//! Release tooling of sc-extension.
//!
//! `xtask image` assembles an OCI image archive (a tar of an OCI image layout: `oci-layout`,
//! `index.json`, `blobs/sha256/...`, plus a `manifest.json` for older `docker load`) around
//! one static binary, without a container engine: the `FROM scratch` equivalent of
//! `images/Dockerfile`. The output depends only on its inputs: every timestamp is the given
//! epoch (the commit time), entries are sorted, owners are 0:0 with fixed modes, JSON keys are
//! sorted and the gzip header carries no time, so the same commit gives the same digests.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    PlatformBuilder, RootFsBuilder,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The non-root user of the image (distroless' `nonroot`); the chart runs the pods as it.
const USER: u32 = 65532;

#[derive(Parser)]
#[command(name = "xtask", about = "Release tooling of sc-extension")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a reproducible OCI image archive holding one static binary as its entrypoint.
    Image(ImageArgs),
}

#[derive(Parser)]
struct ImageArgs {
    /// The static binary; it becomes /usr/local/bin/<name> and the entrypoint.
    #[arg(long)]
    binary: PathBuf,
    /// Name of the binary in the image (sc-agent, sc-job).
    #[arg(long)]
    name: String,
    /// Repository of the image, without tag (ghcr.io/sc-extension/sc-agent).
    #[arg(long)]
    repository: String,
    /// Tag of the image: `org.opencontainers.image.ref.name` in the index.
    #[arg(long)]
    tag: String,
    /// GOARCH name of the binary's architecture.
    #[arg(long, default_value = "amd64")]
    arch: String,
    /// `org.opencontainers.image.version`.
    #[arg(long)]
    version: String,
    /// `org.opencontainers.image.revision`: the commit.
    #[arg(long)]
    revision: String,
    /// `org.opencontainers.image.source`.
    #[arg(long)]
    source: String,
    /// `org.opencontainers.image.licenses` (SPDX expression).
    #[arg(long)]
    licenses: String,
    /// Seconds since the epoch of every timestamp (the commit time: SOURCE_DATE_EPOCH).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    epoch: u64,
    /// The archive to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Image(args) => {
            let digest = image(&args)?;
            println!(
                "{} {}:{} {digest}",
                args.out.display(),
                args.repository,
                args.tag
            );
            Ok(())
        }
    }
}

/// One file of a tar archive: a directory when `data` is `None`.
struct Entry {
    path: String,
    mode: u32,
    data: Option<Vec<u8>>,
}

impl Entry {
    fn dir(path: &str) -> Self {
        Entry {
            path: path.to_string(),
            mode: 0o755,
            data: None,
        }
    }
    fn file(path: &str, mode: u32, data: Vec<u8>) -> Self {
        Entry {
            path: path.to_string(),
            mode,
            data: Some(data),
        }
    }
}

/// A tar of `entries` in path order, owned by 0:0, every mtime `epoch`.
fn tar(mut entries: Vec<Entry>, epoch: u64) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut builder = tar::Builder::new(Vec::new());
    for e in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_mode(e.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(epoch);
        match &e.data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, &e.path, data.as_slice())?;
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, &e.path, std::io::empty())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// JSON of `value` with every object's keys sorted (oci-spec keeps annotations in hash
/// maps, whose order changes from run to run).
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(map) => {
                let sorted: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sort(serde_json::to_value(value)?))?)
}

/// A blob of the layout: its descriptor and its content.
struct Blob {
    descriptor: Descriptor,
    data: Vec<u8>,
}

fn blob(media_type: MediaType, data: Vec<u8>) -> Result<Blob> {
    let descriptor = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(sha256(&data).parse::<Digest>()?)
        .size(data.len() as u64)
        .build()?;
    Ok(Blob { descriptor, data })
}

/// Writes the archive of `args`; returns the digest of the image manifest.
fn image(args: &ImageArgs) -> Result<String> {
    let binary = std::fs::read(&args.binary)
        .with_context(|| format!("reading the binary {}", args.binary.display()))?;
    if !binary.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF binary", args.binary.display());
    }
    let epoch = args.epoch;
    let created = jiff::Timestamp::from_second(i64::try_from(epoch)?)?.to_string();
    let entrypoint = format!("/usr/local/bin/{}", args.name);

    // The root file system: the binary, and the user it runs as for tools that look it up.
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{USER}:\n");
    let layer_tar = tar(
        vec![
            Entry::dir("etc/"),
            Entry::file("etc/passwd", 0o644, passwd.into_bytes()),
            Entry::file("etc/group", 0o644, group.into_bytes()),
            Entry::dir("usr/"),
            Entry::dir("usr/local/"),
            Entry::dir("usr/local/bin/"),
            Entry::file(&entrypoint[1..], 0o755, binary),
        ],
        epoch,
    )?;
    let diff_id = sha256(&layer_tar);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    std::io::Write::write_all(&mut gz, &layer_tar)?;
    let layer = blob(MediaType::ImageLayerGzip, gz.finish()?)?;

    let labels: HashMap<String, String> = [
        ("org.opencontainers.image.title", args.name.clone()),
        ("org.opencontainers.image.version", args.version.clone()),
        ("org.opencontainers.image.revision", args.revision.clone()),
        ("org.opencontainers.image.source", args.source.clone()),
        ("org.opencontainers.image.licenses", args.licenses.clone()),
        ("org.opencontainers.image.created", created.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::from(args.arch.as_str()))
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .user(format!("{USER}:{USER}"))
                .entrypoint(vec![entrypoint])
                .env(vec!["PATH=/usr/local/bin".to_string()])
                .working_dir("/")
                .labels(labels.clone())
                .build()?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .history(vec![
            HistoryBuilder::default()
                .created(created)
                .created_by(format!("xtask image --name {}", args.name))
                .build()?,
        ])
        .build()?;
    let config = blob(MediaType::ImageConfig, canonical_json(&config)?)?;

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor.clone())
        .layers(vec![layer.descriptor.clone()])
        .annotations(labels)
        .build()?;
    let manifest = blob(MediaType::ImageManifest, canonical_json(&manifest)?)?;

    let full_name = format!("{}:{}", args.repository, args.tag);
    let mut in_index = manifest.descriptor.clone();
    in_index.set_platform(Some(
        PlatformBuilder::default()
            .architecture(Arch::from(args.arch.as_str()))
            .os(Os::Linux)
            .build()?,
    ));
    in_index.set_annotations(Some(HashMap::from([
        (
            "org.opencontainers.image.ref.name".to_string(),
            args.tag.clone(),
        ),
        // containerd (ctr, kind) and docker name the image from this one.
        ("io.containerd.image.name".to_string(), full_name.clone()),
    ])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![in_index])
        .build()?;

    let blob_path = |b: &Blob| format!("blobs/sha256/{}", b.descriptor.digest().digest());
    // `docker load` before Docker 25 reads only this file.
    let docker_manifest = serde_json::json!([{
        "Config": blob_path(&config),
        "RepoTags": [full_name],
        "Layers": [blob_path(&layer)],
    }]);
    let mut entries = vec![
        Entry::file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Entry::file("index.json", 0o644, canonical_json(&index)?),
        Entry::file("manifest.json", 0o644, canonical_json(&docker_manifest)?),
        Entry::dir("blobs/"),
        Entry::dir("blobs/sha256/"),
    ];
    let digest = manifest.descriptor.digest().to_string();
    for b in [layer, config, manifest] {
        entries.push(Entry::file(&blob_path(&b), 0o644, b.data));
    }
    let archive = tar(entries, epoch)?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, archive)
        .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(digest)
}
