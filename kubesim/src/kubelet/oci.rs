//! OCI image archives: a directory of `*.tar` files, each an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`) as `make images` writes them, and a cache of unpacked
//! root file systems.
//!
//! **Which archive an image reference runs from.** A reference `[REGISTRY/PATH/]NAME[:TAG]
//! [@sha256:DIGEST]` (no tag and no digest: tag `latest`) matches an image of an archive when
//! - the index entry's full reference (`io.containerd.image.name`, or an
//!   `org.opencontainers.image.ref.name` holding a whole reference) has the same NAME and TAG,
//!   or
//! - its `org.opencontainers.image.ref.name` is a bare tag equal to TAG and the archive file
//!   is `NAME.tar` (or the entry's full reference has the same NAME).
//!
//! With a digest, the image manifest's digest must equal it and the tag is not compared (as
//! container runtimes do); NAME must still match. The registry and the path before NAME are
//! never compared, so `ghcr.io/sc-extension/sc-agent:0.1.0` and `sc-agent:0.1.0` both run
//! `sc-agent.tar` when its index names tag `0.1.0`. Archives are tried in file-name order; the
//! first match wins. No match: the caller falls back to the bin directory and the host.
//!
//! **Unpacking.** A matched image is unpacked once into `<cache>/sha256/<manifest digest>`:
//! its layers in order, each verified against its digest, gzip or plain tar. Entry paths are
//! taken relative to the root; a path with `..` fails the unpack; parent directories are
//! resolved inside the root (a symlink pointing at `/etc` means the root's `etc`), so no
//! entry and no hard link lands outside the root. Whiteouts (`.wh.NAME`, `.wh..wh..opq`)
//! remove what earlier layers put there. Files keep their mode without set-id bits and belong
//! to kubesim's user; devices and FIFOs are skipped. The root is written to a temporary
//! directory and renamed into place, so a cache shared by several kubesim processes never
//! shows a half-unpacked image.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Blobs at most this large are read while indexing an archive (index, manifests, configs).
const SMALL_BLOB: u64 = 4 << 20;

/// Why an image could not be prepared (reported as the container's `ErrImagePull` message).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading the image archive {path} failed: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image archive {path} is not a valid OCI image layout: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("unpacking {digest} into {root} failed: {reason}")]
    Unpack {
        digest: String,
        root: PathBuf,
        reason: String,
    },
}

/// An image reference split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag and digest (`ghcr.io/sc-extension/sc-agent`).
    pub repository: String,
    /// The last path segment of the repository (`sc-agent`).
    pub name: String,
    pub tag: Option<String>,
    /// `sha256:...`
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(reference: &str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (reference, None),
        };
        let (repository, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        ImageRef {
            repository: repository.to_string(),
            name: repository.rsplit('/').next().unwrap_or("").to_string(),
            tag,
            digest,
        }
    }

    /// The tag compared: the given one, `latest` when there is neither tag nor digest.
    fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }
}

/// The parts of an image configuration the kubelet uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries split at the first `=`.
    pub env: Vec<(String, String)>,
    /// `uid`, `uid:gid`, `name`, `name:group`, or empty (root).
    pub user: String,
    pub working_dir: String,
}

impl ImageConfig {
    fn from_json(config: &Value) -> Self {
        let c = &config["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        ImageConfig {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"])
                .into_iter()
                .filter_map(|e| e.split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect(),
            user: c["User"].as_str().unwrap_or("").to_string(),
            working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// An image ready to run: its unpacked root and configuration.
#[derive(Clone, Debug)]
pub struct Unpacked {
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    /// The root file system.
    pub root: PathBuf,
    pub config: ImageConfig,
    /// The archive it came from.
    pub archive: PathBuf,
}

/// One image of an archive, as its index describes it.
#[derive(Clone, Debug)]
struct Indexed {
    /// `(name, tag)` pairs the image answers to.
    names: Vec<(String, String)>,
    digest: String,
    config: ImageConfig,
    /// Layer digests and media types, bottom first.
    layers: Vec<(String, String)>,
}

/// What an archive holds, remembered by size and modification time.
struct Archive {
    stamp: (u64, Option<SystemTime>),
    images: Vec<Indexed>,
}

/// A directory of image archives and the cache they are unpacked into.
pub struct ImageStore {
    dir: PathBuf,
    cache: PathBuf,
    archives: Mutex<HashMap<PathBuf, Arc<Archive>>>,
    /// Serializes unpacking within this process.
    unpacking: Mutex<()>,
}

impl ImageStore {
    pub fn new(dir: PathBuf, cache: PathBuf) -> Self {
        Self {
            dir,
            cache,
            archives: Mutex::new(HashMap::new()),
            unpacking: Mutex::new(()),
        }
    }

    /// The cache directory of unpacked roots.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The image `reference` runs from, unpacked; `Ok(None)` when no archive matches.
    /// Blocking: call it from a blocking task.
    pub fn resolve(&self, reference: &str) -> Result<Option<Unpacked>, ImageError> {
        let wanted = ImageRef::parse(reference);
        if wanted.name.is_empty() {
            return Ok(None);
        }
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tar") && p.is_file())
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "reading the image directory failed");
                return Ok(None);
            }
        };
        files.sort();
        for path in files {
            let archive = self.index(&path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(image) = archive.images.iter().find(|i| matches(&wanted, &stem, i)) {
                return self.unpack(&path, image).map(Some);
            }
        }
        Ok(None)
    }

    /// The images of the archive at `path` (read again when it changed).
    fn index(&self, path: &Path) -> Result<Arc<Archive>, ImageError> {
        let read_err = |source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let stamp = (meta.len(), meta.modified().ok());
        if let Some(a) = self.lock_archives().get(path)
            && a.stamp == stamp
        {
            return Ok(a.clone());
        }
        let archive = Arc::new(Archive {
            stamp,
            images: read_index(path)?,
        });
        self.lock_archives()
            .insert(path.to_path_buf(), archive.clone());
        Ok(archive)
    }

    fn lock_archives(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Archive>>> {
        self.archives.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unpack(&self, archive: &Path, image: &Indexed) -> Result<Unpacked, ImageError> {
        let hex = image.digest.trim_start_matches("sha256:");
        let root = self.cache.join("sha256").join(hex);
        let done = Unpacked {
            digest: image.digest.clone(),
            root: root.clone(),
            config: image.config.clone(),
            archive: archive.to_path_buf(),
        };
        if root.is_dir() {
            return Ok(done);
        }
        let _guard = self.unpacking.lock().unwrap_or_else(|e| e.into_inner());
        if root.is_dir() {
            return Ok(done);
        }
        let fail = |reason: String| ImageError::Unpack {
            digest: image.digest.clone(),
            root: root.clone(),
            reason,
        };
        let parent = self.cache.join("sha256");
        std::fs::create_dir_all(&parent).map_err(|e| fail(e.to_string()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{hex}-"))
            .tempdir_in(&parent)
            .map_err(|e| fail(e.to_string()))?;
        for (digest, media_type) in &image.layers {
            apply_layer(archive, digest, media_type, tmp.path()).map_err(&fail)?;
        }
        set_mode(tmp.path(), 0o755).map_err(|e| fail(e.to_string()))?;
        let tmp = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp, &root) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another kubesim sharing the cache finished first.
            if !root.is_dir() {
                return Err(fail(e.to_string()));
            }
        }
        tracing::info!(archive = %archive.display(), digest = %image.digest, root = %root.display(), "unpacked an image");
        Ok(done)
    }
}

fn matches(wanted: &ImageRef, stem: &str, image: &Indexed) -> bool {
    // With a digest the tag is not compared.
    let tag = match &wanted.digest {
        Some(d) if *d != image.digest => return false,
        Some(_) => None,
        None => wanted.effective_tag(),
    };
    image.names.iter().any(|(name, t)| {
        (name == &wanted.name || name.is_empty() && stem == wanted.name)
            && tag.is_none_or(|tag| tag == t)
    })
}

/// Read `index.json` and the small blobs of the archive, and describe its images.
fn read_index(path: &Path) -> Result<Vec<Indexed>, ImageError> {
    let read_err = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |reason: String| ImageError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tar = tar::Archive::new(BufReader::new(file));
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if !entry.header().entry_type().is_file() || entry.size() > SMALL_BLOB {
            continue;
        }
        let name = layout_path(&entry.path().map_err(read_err)?);
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(read_err)?;
        files.insert(name, data);
    }
    let blob = |digest: &str| -> Result<Value, ImageError> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid(format!("unsupported digest {digest}")))?;
        let data = files
            .get(&format!("blobs/sha256/{hex}"))
            .ok_or_else(|| invalid(format!("blob {digest} is missing")))?;
        if sha256(data) != digest {
            return Err(invalid(format!("blob {digest} does not match its digest")));
        }
        serde_json::from_slice(data).map_err(|e| invalid(format!("blob {digest}: {e}")))
    };
    let index: Value = serde_json::from_slice(
        files
            .get("index.json")
            .ok_or_else(|| invalid("index.json is missing".into()))?,
    )
    .map_err(|e| invalid(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for desc in index["manifests"].as_array().into_iter().flatten() {
        let annotations = &desc["annotations"];
        let mut names = Vec::new();
        let mut full_name = None;
        for key in [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ] {
            if let Some(r) = annotations[key].as_str()
                && (r.contains('/') || r.contains(':') || r.contains('@'))
            {
                let r = ImageRef::parse(r);
                if let Some(t) = r.effective_tag() {
                    names.push((r.name.clone(), t.to_string()));
                }
                full_name.get_or_insert(r.name);
            }
        }
        if let Some(tag) = annotations["org.opencontainers.image.ref.name"].as_str()
            && !(tag.contains('/') || tag.contains(':') || tag.contains('@'))
        {
            // A bare tag: the name is the full reference's, or the archive's file name.
            names.push((full_name.clone().unwrap_or_default(), tag.to_string()));
        }
        let Some(mut digest) = desc["digest"].as_str().map(str::to_string) else {
            continue;
        };
        let mut manifest = blob(&digest)?;
        // A nested index (multi-platform image): pick this machine's platform.
        if manifest["manifests"].is_array() {
            let chosen = manifest["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| {
                    let p = &m["platform"];
                    p.is_null() || (p["os"] == "linux" && p["architecture"] == super::go_arch())
                })
                .and_then(|m| m["digest"].as_str())
                .ok_or_else(|| invalid(format!("{digest} has no image for this platform")))?
                .to_string();
            manifest = blob(&chosen)?;
            digest = chosen;
        }
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| invalid(format!("manifest {digest} has no config")))?;
        let config = ImageConfig::from_json(&blob(config_digest)?);
        let layers = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    l["digest"].as_str()?.to_string(),
                    l["mediaType"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect();
        out.push(Indexed {
            names,
            digest,
            config,
            layers,
        });
    }
    Ok(out)
}

/// A path inside the layout archive, without a leading `./`.
fn layout_path(p: &Path) -> String {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Find the layer blob `digest` in the archive and apply it to `root`.
fn apply_layer(archive: &Path, digest: &str, media_type: &str, root: &Path) -> Result<(), String> {
    if media_type.contains("zstd") {
        return Err(format!("layer {digest}: zstd layers are not supported"));
    }
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("layer {digest}: unsupported digest"))?;
    let wanted = format!("blobs/sha256/{hex}");
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut outer = tar::Archive::new(BufReader::new(file));
    for entry in outer.entries().map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if layout_path(&entry.path().map_err(|e| e.to_string())?) != wanted {
            continue;
        }
        let mut hashing = BufReader::new(Hashing {
            inner: entry,
            hasher: Sha256::new(),
        });
        let gzip = hashing
            .fill_buf()
            .map_err(|e| e.to_string())?
            .starts_with(&[0x1f, 0x8b]);
        {
            let reader: Box<dyn Read + '_> = if gzip {
                Box::new(flate2::bufread::MultiGzDecoder::new(&mut hashing))
            } else {
                Box::new(&mut hashing)
            };
            let mut layer = tar::Archive::new(reader);
            for e in layer
                .entries()
                .map_err(|e| format!("layer {digest}: {e}"))?
            {
                let e = e.map_err(|e| format!("layer {digest}: {e}"))?;
                apply_entry(root, e).map_err(|e| format!("layer {digest}: {e}"))?;
            }
        }
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| e.to_string())?;
        let got = format!(
            "sha256:{}",
            hex::encode(hashing.into_inner().hasher.finalize())
        );
        if got != digest {
            return Err(format!("layer {digest} does not match its digest ({got})"));
        }
        return Ok(());
    }
    Err(format!("layer {digest} is missing from the archive"))
}

/// The normal components of an entry path; `..` is refused.
fn entry_components(p: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(format!("entry {} leaves the root", p.display()));
            }
        }
    }
    Ok(out)
}

fn apply_entry<R: Read>(root: &Path, mut entry: tar::Entry<'_, R>) -> Result<(), String> {
    let path = entry.path().map_err(|e| e.to_string())?.into_owned();
    let mut parts = entry_components(&path)?;
    let Some(name) = parts.pop() else {
        return Ok(()); // the root itself
    };
    let parent = resolve_in_root(root, &parts.join("/"), true)?;
    ensure_dir(root, &parent)?;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    if name == ".wh..wh..opq" {
        for child in std::fs::read_dir(&parent).map_err(err)? {
            remove(&child.map_err(err)?.path()).map_err(err)?;
        }
        return Ok(());
    }
    if let Some(hidden) = name.strip_prefix(".wh.") {
        let target = parent.join(hidden);
        if target.symlink_metadata().is_ok() {
            remove(&target).map_err(err)?;
        }
        return Ok(());
    }
    let target = parent.join(&name);
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o1777;
    let kind = header.entry_type();
    let existing = target.symlink_metadata().ok();
    match kind {
        tar::EntryType::Directory => {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                remove(&target).map_err(err)?;
            }
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(err)?;
            }
            set_mode(&target, mode).map_err(err)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if existing.is_some() {
                remove(&target).map_err(err)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .map_err(err)?;
            std::io::copy(&mut entry, &mut f).map_err(err)?;
            set_mode(&target, mode).map_err(err)?;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name()
                .map_err(err)?
                .ok_or_else(|| format!("{}: symlink without target", path.display()))?
                .into_owned();
            if existing.is_some() {
                remove(&target).map_err(err)?;
            }
            std::os::unix::fs::symlink(link, &target).map_err(err)?;
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name()
                .map_err(err)?
                .ok_or_else(|| format!("{}: hard link without target", path.display()))?
                .into_owned();
            let mut link_parts = entry_components(&link)?;
            let link_name = link_parts
                .pop()
                .ok_or_else(|| format!("{}: hard link to the root", path.display()))?;
            let source = resolve_in_root(root, &link_parts.join("/"), true)?.join(link_name);
            if !source.symlink_metadata().is_ok_and(|m| m.is_file()) {
                return Err(format!(
                    "{}: hard link to {}, which is not a file of the image",
                    path.display(),
                    link.display()
                ));
            }
            if existing.is_some() {
                remove(&target).map_err(err)?;
            }
            std::fs::hard_link(&source, &target).map_err(err)?;
        }
        // Devices, FIFOs and the like have no use for a process on the host.
        _ => {}
    }
    Ok(())
}

/// Create `dir` (already resolved inside `root`) and its missing parents.
fn ensure_dir(root: &Path, dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    if !dir.starts_with(root) {
        return Err(format!("{} is outside the root", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

fn remove(p: &Path) -> std::io::Result<()> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// The host path of `path` inside `root` as a process chrooted there would see it: symlinks
/// are followed (the last component only with `follow_last`), an absolute target starts again
/// at `root`, and `..` never goes above `root`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf, String> {
    let mut queue: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = queue.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                cur.pop();
            }
            name => {
                let next = cur.join(name);
                let full = root.join(&next);
                let last = queue.iter().all(|p| p.is_empty() || p == ".");
                let link = full
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink());
                if link && (follow_last || !last) {
                    hops += 1;
                    if hops > 40 {
                        return Err(format!("{path}: too many levels of symbolic links"));
                    }
                    let target = std::fs::read_link(&full)
                        .map_err(|e| format!("{}: {e}", full.display()))?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        cur = PathBuf::new();
                    }
                    let mut rest: VecDeque<String> =
                        target.split('/').map(str::to_string).collect();
                    rest.extend(queue);
                    queue = rest;
                } else {
                    cur = next;
                }
            }
        }
    }
    Ok(root.join(cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = ImageRef::parse("ghcr.io/sc-extension/sc-agent:0.1.0");
        assert_eq!(r.repository, "ghcr.io/sc-extension/sc-agent");
        assert_eq!(r.name, "sc-agent");
        assert_eq!(r.tag.as_deref(), Some("0.1.0"));
        let r = ImageRef::parse("localhost:5000/sc-job@sha256:ab");
        assert_eq!(
            (r.name.as_str(), r.tag, r.digest.as_deref()),
            ("sc-job", None, Some("sha256:ab"))
        );
        assert_eq!(ImageRef::parse("alpine").effective_tag(), Some("latest"));
        assert_eq!(ImageRef::parse("a@sha256:x").effective_tag(), None);
    }

    #[test]
    fn matching_rule() {
        let image = |names: &[(&str, &str)]| Indexed {
            names: names
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            digest: "sha256:d1".into(),
            config: ImageConfig::default(),
            layers: vec![],
        };
        // A bare tag: the archive's file name is the name.
        let bare = image(&[("", "0.1.0")]);
        let m = |r: &str, stem: &str, i: &Indexed| matches(&ImageRef::parse(r), stem, i);
        assert!(m("ghcr.io/sc-extension/sc-agent:0.1.0", "sc-agent", &bare));
        assert!(m("sc-agent:0.1.0", "sc-agent", &bare));
        assert!(!m("sc-agent:0.2.0", "sc-agent", &bare));
        assert!(!m("sc-job:0.1.0", "sc-agent", &bare));
        assert!(!m("sc-agent", "sc-agent", &bare));
        assert!(m("sc-agent@sha256:d1", "sc-agent", &bare));
        assert!(m("sc-agent:other@sha256:d1", "sc-agent", &bare));
        assert!(!m("sc-agent:0.1.0@sha256:d2", "sc-agent", &bare));
        // A full reference: the file name does not matter.
        let full = image(&[("sc-agent", "0.1.0"), ("sc-agent", "0.1.0")]);
        assert!(m("example.org/x/sc-agent:0.1.0", "anything", &full));
        assert!(!m("example.org/x/other:0.1.0", "other", &full));
    }

    #[test]
    fn resolving_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("usr/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/sh", true).unwrap(),
            root.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(root, "/usr/up/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(root, "/../../x", true).unwrap(),
            root.join("x")
        );
        assert_eq!(
            resolve_in_root(root, "/bin", false).unwrap(),
            root.join("bin")
        );
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "/loop/x", true).is_err());
    }

    /// A plain tar with the given entries (path, kind, data or link target).
    fn layer(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o4755
            });
            h.set_size(if *kind == tar::EntryType::Regular {
                data.len() as u64
            } else {
                0
            });
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.set_link_name(data).unwrap();
            }
            // Bypass the builder's path checks: write the name bytes as they are.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            let body: &[u8] = if *kind == tar::EntryType::Regular {
                data.as_bytes()
            } else {
                &[]
            };
            b.append(&h, body).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn apply(root: &Path, data: &[u8]) -> Result<(), String> {
        let mut a = tar::Archive::new(data);
        for e in a.entries().unwrap() {
            apply_entry(root, e.unwrap())?;
        }
        Ok(())
    }

    #[test]
    fn unpacking_stays_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let out = outside.path().display().to_string();
        let ok = layer(&[
            ("etc/", tar::EntryType::Directory, ""),
            (
                "etc/passwd",
                tar::EntryType::Regular,
                "root:x:0:0::/:/bin/sh\n",
            ),
            ("escape", tar::EntryType::Symlink, &out),
            ("escape/planted", tar::EntryType::Regular, "x"),
            ("hard", tar::EntryType::Link, "etc/passwd"),
            ("gone", tar::EntryType::Regular, "x"),
            ("keep/", tar::EntryType::Directory, ""),
            ("keep/a", tar::EntryType::Regular, "a"),
        ]);
        apply(&root, &ok).unwrap();
        // The symlink's target is taken inside the root.
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let inside = root
            .join(outside.path().strip_prefix("/").unwrap())
            .join("planted");
        assert!(inside.is_file(), "{}", inside.display());
        assert_eq!(
            std::fs::read_to_string(root.join("hard")).unwrap(),
            "root:x:0:0::/:/bin/sh\n"
        );
        // Set-id bits are dropped.
        let mode = std::fs::metadata(root.join("etc/passwd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        // Whiteouts of a later layer.
        apply(
            &root,
            &layer(&[
                (".wh.gone", tar::EntryType::Regular, ""),
                ("keep/.wh..wh..opq", tar::EntryType::Regular, ""),
            ]),
        )
        .unwrap();
        assert!(!root.join("gone").exists());
        assert!(root.join("keep").is_dir());
        assert!(!root.join("keep/a").exists());
        // `..` and hard links out of the root are refused.
        let e = apply(&root, &layer(&[("../evil", tar::EntryType::Regular, "x")])).unwrap_err();
        assert!(e.contains("leaves the root"), "{e}");
        assert!(!dir.path().join("evil").exists());
        let e = apply(
            &root,
            &layer(&[("h", tar::EntryType::Link, "../../etc/passwd")]),
        )
        .unwrap_err();
        assert!(e.contains("leaves the root"), "{e}");
        let e = apply(&root, &layer(&[("h2", tar::EntryType::Link, "escape/x")])).unwrap_err();
        assert!(e.contains("not a file of the image"), "{e}");
    }
}
