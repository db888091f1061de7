//! The crate's layering, checked: the `crate::` paths of every module form a graph between
//! the top-level modules (`cluster`, `kubelet`, `time`, ...), and that graph has no cycle.
//! A helper two layers share belongs in a leaf module both use (as `time` or `error`), not in
//! one of them.
//!
//! Test code (`#[cfg(test)]` items and the files they declare) is left out: nothing depends
//! on it, so it cannot close a loop of the code that ships. The source is read as text: comments,
//! string and character literals are blanked first, then `mod` declarations are followed from
//! `lib.rs` and every `crate::a...` / `crate::{a, b...}` path counts as an edge to `a` (a name
//! `lib.rs` re-exports counts as the module it comes from).
//!
//! The README's layout table lists the modules bottom up; a module may use only modules of its
//! row or above, so the table stays the map of the crate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Loops between top-level modules that are part of the design, each as its sorted module
/// names. There are none: keep it that way unless a loop cannot be cut (a trait in the lower
/// module is the usual cut, as `cluster::PodLogs` is for the kubelet), and say here why.
const ALLOWED_CYCLES: &[&[&str]] = &[];

/// Edges `from -> to` between top-level modules, each with the files that create it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// `src` with comments, string literals and character literals replaced by spaces (newlines
/// kept), so that what remains is code.
fn blank_non_code(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && matches!(next, Some('"' | '#'))
        {
            // A raw string: r"..." or r#"..."# (also br"...").
            let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = (body..c.len())
                .find(|&j| c[j..].starts_with(&close))
                .map_or(c.len(), |j| j + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{1F}'); anything else is a lifetime or label.
            let end = if next == Some('\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'').map(|j| j + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// The index just past the bracket closing the one at `open` (`{`, `(` or `[`).
fn matching(c: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (j, ch) in c.iter().enumerate().skip(open) {
        match ch {
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    c.len()
}

/// Blank every `#[cfg(test)]` item of `code` (already free of comments and literals); returns
/// the names of the test modules it declares in their own files (`#[cfg(test)] mod tests;`).
fn strip_test_items(code: &mut String) -> Vec<String> {
    const ATTR: &str = "#[cfg(test)]";
    let mut test_mods = Vec::new();
    while let Some(at) = code.find(ATTR) {
        let c: Vec<char> = code.chars().collect();
        let start = code[..at].chars().count();
        let mut j = start + ATTR.chars().count();
        let end = loop {
            match c.get(j) {
                None => break c.len(),
                Some('#') => j = matching(&c, j + 1),
                Some('(' | '[') => j = matching(&c, j),
                Some(';') => break j + 1,
                Some('{') => break matching(&c, j),
                Some(_) => j += 1,
            }
        };
        let item: String = c[start..end].iter().collect();
        let words: Vec<&str> = item[ATTR.len()..]
            .split(|ch: char| ch.is_whitespace() || ch == ';')
            .filter(|w| !w.is_empty())
            .collect();
        if item.ends_with(';')
            && let Some(name) = words.iter().position(|w| *w == "mod").map(|p| words[p + 1])
        {
            test_mods.push(name.to_string());
        }
        let mut rest = c;
        for ch in &mut rest[start..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        *code = rest.into_iter().collect();
    }
    test_mods
}

/// The identifier at the start of `s` (after whitespace).
fn leading_ident(s: &str) -> &str {
    let s = s.trim_start();
    let end = s
        .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every `crate::` path in `code`: `crate::a::b` gives `a`,
/// `crate::{a::x, b}` gives `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|ch| ch.is_alphanumeric() || ch == '_') {
            continue; // `mycrate::`
        }
        let tail = rest.trim_start();
        if tail.starts_with('{') {
            let c: Vec<char> = tail.chars().collect();
            let inner: String = c[1..matching(&c, 0).saturating_sub(1)].iter().collect();
            let mut depth = 0;
            let mut item = String::new();
            for ch in inner.chars().chain(std::iter::once(',')) {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name = leading_ident(&item);
                        if !name.is_empty() {
                            out.push(name.to_string());
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
        } else {
            out.push(leading_ident(tail).to_string());
        }
    }
    out
}

/// The modules a file declares in files of their own (`mod a;`, `pub mod a;`,
/// `pub(crate) mod a;`) in `code`.
fn declared_mods(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("mod ") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
        {
            continue;
        }
        let name = leading_ident(&code[at + 4..]);
        let after = code[at + 4..].trim_start()[name.len()..].trim_start();
        if !name.is_empty() && after.starts_with(';') {
            out.push(name.to_string());
        }
    }
    out
}

/// The names `lib.rs` re-exports at the crate root, mapped to the module they come from
/// (`pub use instance::{Kubesim, Options}`).
fn root_reexports(code: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(path) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        let module = leading_ident(path).to_string();
        let tail = path[module.len()..].trim_start_matches("::");
        let names: Vec<&str> = match tail.strip_prefix('{') {
            Some(group) => group.trim_end_matches('}').split(',').collect(),
            None => vec![tail],
        };
        for n in names {
            // `a as b` is known by `b`.
            let n = n.split(" as ").last().unwrap_or(n).trim();
            let name = n.rsplit("::").next().unwrap_or(n);
            if !name.is_empty() {
                out.insert(name.to_string(), module.clone());
            }
        }
    }
    out
}

/// The code of `lib.rs` (test items left out).
fn lib_code(src: &Path) -> String {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let mut code = blank_non_code(&lib);
    strip_test_items(&mut code);
    code
}

/// The top-level modules `lib.rs` declares (test modules left out).
fn top_modules(src: &Path) -> BTreeSet<String> {
    declared_mods(&lib_code(src)).into_iter().collect()
}

/// The graph of the crate rooted at `src/lib.rs`, following its `mod` declarations.
fn crate_graph(src: &Path) -> Graph {
    let tops = top_modules(src);
    let reexports = root_reexports(&lib_code(src));
    let mut graph = Graph::new();
    // (file, directory of its child modules, top-level module)
    let mut pending: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    for top in &tops {
        let (file, dir) = module_file(src, top);
        pending.push((file, dir, top.clone()));
    }
    while let Some((file, dir, top)) = pending.pop() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let mut code = blank_non_code(&text);
        strip_test_items(&mut code);
        let rel = file
            .strip_prefix(src)
            .unwrap_or(&file)
            .display()
            .to_string();
        for name in crate_paths(&code) {
            let target = if tops.contains(&name) {
                name
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else {
                panic!("{rel}: `crate::{name}` is neither a top-level module nor a re-export");
            };
            if target != top {
                graph
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .insert(rel.clone());
            }
        }
        for child in declared_mods(&code) {
            let (f, d) = module_file(&dir, &child);
            pending.push((f, d, top.clone()));
        }
    }
    graph
}

/// The file of module `name` declared by a module whose children live in `dir`, and the
/// directory of its own children.
fn module_file(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let flat = dir.join(format!("{name}.rs"));
    let file = if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    };
    (file, dir.join(name))
}

/// The loops of `graph`: each strongly connected set of two or more modules (sorted), with
/// one cycle through it spelled out, edge by edge with the files that create the edge.
fn cycles(graph: &Graph) -> Vec<(Vec<String>, String)> {
    let nodes: BTreeSet<&String> = graph
        .iter()
        .flat_map(|(a, to)| std::iter::once(a).chain(to.keys()))
        .collect();
    let succ = |n: &str| -> Vec<&String> {
        graph
            .get(n)
            .map(|to| to.keys().collect())
            .unwrap_or_default()
    };
    // Modules that reach each other: a reaches b and b reaches a.
    let reach = |from: &String| -> BTreeSet<&String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for s in succ(n) {
                if seen.insert(s) {
                    stack.push(s);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<&String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for &n in &nodes {
        if done.contains(n) || !reaches[n].contains(n) {
            continue;
        }
        let set: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[n].contains(*m) && reaches[*m].contains(n))
            .map(|m| m.to_string())
            .collect();
        done.extend(set.iter().cloned());
        // The shortest path from n back to n (breadth first).
        let mut prev: HashMap<&String, &String> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([n]);
        'search: while let Some(m) = queue.pop_front() {
            for s in succ(m) {
                if s == n {
                    prev.insert(n, m);
                    break 'search;
                }
                if !prev.contains_key(s) {
                    prev.insert(s, m);
                    queue.push_back(s);
                }
            }
        }
        let mut path = vec![n];
        let mut at = prev[n];
        while at != n {
            path.push(at);
            at = prev[at];
        }
        path.push(n);
        path.reverse();
        let steps: Vec<String> = path
            .windows(2)
            .map(|w| {
                let files: Vec<&str> = graph[w[0]][w[1]].iter().map(String::as_str).collect();
                format!("{} -> {} ({})", w[0], w[1], files.join(", "))
            })
            .collect();
        out.push((set, steps.join("; ")));
    }
    out
}

#[test]
fn no_import_loops_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = crate_graph(&src);
    // The check sees the crate: the in-process API is used by the layers above it.
    assert!(graph["kubelet"].contains_key("cluster"), "{graph:#?}");
    assert!(graph["server"].contains_key("cluster"), "{graph:#?}");
    let found = cycles(&graph);
    let unexpected: Vec<String> = found
        .iter()
        .filter(|(set, _)| !ALLOWED_CYCLES.iter().any(|a| a == set))
        .map(|(set, how)| format!("{}: {how}", set.join(" <-> ")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "import loops between kubesim's top-level modules (move the shared helper into a leaf \
         module):\n{}",
        unexpected.join("\n")
    );
    for allowed in ALLOWED_CYCLES {
        assert!(
            found.iter().any(|(set, _)| set == allowed),
            "{allowed:?} is no longer a loop: remove it from ALLOWED_CYCLES"
        );
    }
}

/// The rows of the first table under `## Layout` in the README: the modules each row names
/// in its first column (`patch/` names `patch`), bottom layer first.
fn documented_layers(readme: &str) -> Vec<Vec<String>> {
    readme
        .split("\n## Layout")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip_while(|l| !l.starts_with("| module"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let first = row.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|m| m.trim_end_matches('/').to_string())
                .collect()
        })
        .collect()
}

#[test]
fn modules_use_only_the_layers_below_them_as_the_readme_lists_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let layers = documented_layers(&readme);
    let layer: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let src = root.join("src");
    let undocumented: Vec<String> = top_modules(&src)
        .into_iter()
        .filter(|m| !layer.contains_key(m.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules missing from the README's layout table: {undocumented:?} (table: {layers:?})"
    );
    let mut upward = Vec::new();
    for (from, to) in &crate_graph(&src) {
        for (target, files) in to {
            if layer[target.as_str()] > layer[from.as_str()] {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                upward.push(format!("{from} -> {target} ({})", files.join(", ")));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules using a module the README's layout table lists above them (move the code, or \
         the row if the layering changed):\n{}",
        upward.join("\n")
    );
}

#[test]
fn test_code_comments_and_literals_are_not_imports() {
    let mut code = blank_non_code(
        r##"use crate::a::X; // crate::commented
/* crate::block /* nested */ crate::still */
fn f<'a>(s: &'a str) -> char { let _ = "crate::quoted \" crate::escaped"; let _ = r#"crate::raw"#; '{' }
use crate::{b::{Y, Z}, c};
#[cfg(test)]
mod tests { use crate::d; fn g() { let _ = [0u8; 2]; } }
#[cfg(test)]
mod more;
fn h() -> crate::e::T { todo!() }
"##,
    );
    let test_mods = strip_test_items(&mut code);
    assert_eq!(test_mods, ["more"]);
    assert_eq!(crate_paths(&code), ["a", "b", "c", "e"]);
    assert_eq!(declared_mods("pub mod x;\nmod y;\nmod z { }\n"), ["x", "y"]);
    let re = root_reexports("pub use instance::{Kubesim, Options as Opts};\npub use a::b::C;\n");
    assert_eq!(re["Kubesim"], "instance");
    assert_eq!(re["Opts"], "instance");
    assert_eq!(re["C"], "a");
}

#[test]
fn a_loop_is_named_with_the_files_that_make_it() {
    let mut graph = Graph::new();
    let mut edge = |a: &str, b: &str, file: &str| {
        graph
            .entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(file.into());
    };
    edge("admission", "cluster", "admission.rs");
    edge("cluster", "admission", "cluster/crud.rs");
    edge("cluster", "store", "cluster/mod.rs");
    edge("kubelet", "cluster", "kubelet/mod.rs");
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, ["admission", "cluster"]);
    assert_eq!(
        found[0].1,
        "admission -> cluster (admission.rs); cluster -> admission (cluster/crud.rs)"
    );
}
