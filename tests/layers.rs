//! The layering rule of `docs/architecture.md` ("who may import whom"), checked on the source.
//!
//! Every `crate::` path in `src/` (in `use` items, grouped or not, and inline like
//! `crate::metrics::record_error(…)`; `super::` paths too; comments, doc comments and string
//! literals are skipped) is resolved to the module file it names. Module files are the nodes of
//! a dependency graph, at most two levels deep: a file under `src/a/b/` is part of `a::b` (the
//! session's files are one module, `frontend::session`; the merge engine's are `plan::merge`).
//! A module and its own submodules (`plan` and `plan::select`) import each other freely and
//! count as one unit. The check fails:
//! - on a cycle between module files, naming it (`a → b → c → a`) with where each edge is;
//! - on a module that imports a higher layer, naming both and the line;
//! - on a module file that belongs to no layer (add it to [`LAYERS`] and to the document).
//!
//! `cargo test --test layers -- --nocapture` prints the graph; `SHARDPROXY_LAYERS_SRC=dir` checks
//! another tree (e.g. an older checkout's `src/`) with these rules. The checker itself is tested on
//! small fake trees below, so that it cannot silently pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The layers, lowest first, by top-level module. A module may import modules of its own layer
/// and of the layers below, never above (`docs/architecture.md`).
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["config", "lex", "metrics", "session_state"]),
    ("protocol", &["protocol"]),
    ("core", &["backend", "plan", "ring", "sequence", "workers"]),
    ("exec", &["exec"]),
    ("frontend", &["frontend", "proxy"]),
    ("operator", &["admin", "http"]),
    ("top", &["server", "main"]),
];

/// Files below this depth belong to the module of their depth-2 ancestor directory.
const NODE_DEPTH: usize = 2;

#[test]
fn the_source_follows_the_layers_and_has_no_cycles() {
    // SHARDPROXY_LAYERS_SRC checks another tree (another checkout's `src/`) with these rules.
    let src = std::env::var_os("SHARDPROXY_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let started = std::time::Instant::now();
    let report = check(&src, LAYERS);
    let elapsed = started.elapsed();
    println!("{}", report.graph_text());
    println!("checked {} module files in {elapsed:?}", report.files);
    assert!(
        report.problems.is_empty(),
        "the module graph breaks the layering rule of docs/architecture.md:\n{}",
        report.problems.join("\n")
    );
    assert!(
        report.files > 20,
        "too few module files found under {src:?}"
    );
    assert!(elapsed.as_secs() < 2, "the check took {elapsed:?}");
}

// ----- the checker -----

/// What [`check`] found.
struct Report {
    files: usize,
    /// `from → to`, with the first place the reference is written (`src/x.rs:12`).
    edges: BTreeMap<(String, String), String>,
    problems: Vec<String>,
}

impl Report {
    fn graph_text(&self) -> String {
        let mut by_from: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            by_from.entry(from).or_default().push(to);
        }
        let mut out = String::from("module dependencies (module → what it imports):\n");
        for (from, tos) in by_from {
            let _ = writeln!(out, "  {from} → {}", tos.join(", "));
        }
        out
    }
}

/// Checks the tree under `src` (a crate's `src/`) against `layers`.
fn check(src: &Path, layers: &[(&str, &[&str])]) -> Report {
    let files = module_files(src);
    let nodes: BTreeSet<String> = files.iter().map(|(m, _)| node_of(m)).collect();
    let mut problems = Vec::new();
    let layer_of = |node: &str| -> Option<(usize, &str)> {
        let top = node.split("::").next().unwrap_or("");
        layers
            .iter()
            .position(|(_, mods)| mods.contains(&top))
            .map(|i| (i, layers[i].0))
    };
    for n in &nodes {
        if !n.is_empty() && layer_of(n).is_none() {
            problems.push(format!(
                "module {n} belongs to no layer: add it to LAYERS in tests/layers.rs and to \
                 docs/architecture.md"
            ));
        }
    }
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let from = node_of(module);
        // The binary's root names the library by its crate name.
        let roots: &[&str] = if module == "main" {
            &["crate", "shardproxy"]
        } else {
            &["crate"]
        };
        let shown = path
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(path);
        for (target, line) in references(&text, module, roots) {
            let Some(to) = resolve(&target, &nodes) else {
                continue;
            };
            if to == from || to.is_empty() || from.is_empty() {
                continue;
            }
            edges
                .entry((from.clone(), to))
                .or_insert_with(|| format!("{}:{line}", shown.display()));
        }
    }
    for ((from, to), at) in &edges {
        if let (Some((lf, nf)), Some((lt, nt))) = (layer_of(from), layer_of(to)) {
            if lt > lf {
                problems.push(format!(
                    "layer violation: {from} ({nf}) imports {to} ({nt}), a higher layer, at {at}"
                ));
            }
        }
    }
    // A module and its submodules are one unit: their references to each other make no cycle.
    let graph: BTreeMap<&str, Vec<&str>> = {
        let mut g: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            if !related(from, to) {
                g.entry(from.as_str()).or_default().push(to.as_str());
            }
        }
        g
    };
    for (members, found) in cycles(&graph) {
        for cycle in found {
            let mut text = format!("cycle: {}", cycle.join(" → "));
            for pair in cycle.windows(2) {
                let at = &edges[&(pair[0].to_string(), pair[1].to_string())];
                let _ = write!(text, "\n    {} → {} at {at}", pair[0], pair[1]);
            }
            if members.len() > cycle.len() - 1 {
                let _ = write!(
                    text,
                    "\n    (one of the cycles among {})",
                    members.join(", ")
                );
            }
            problems.push(text);
        }
    }
    Report {
        files: files.len(),
        edges,
        problems,
    }
}

/// Every `.rs` file under `src` with its module path (`backend/pool.rs` → `backend::pool`,
/// `plan/mod.rs` → `plan`, `lib.rs` → the root, ``; `main.rs` → `main`).
fn module_files(src: &Path) -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    walk(src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let file = parts.pop().expect("a file name");
            let stem = file.trim_end_matches(".rs");
            if !(stem == "mod" || (parts.is_empty() && stem == "lib")) {
                parts.push(stem.to_string());
            }
            (parts.join("::"), p)
        })
        .collect()
}

/// The graph node a module belongs to: itself, or its ancestor at [`NODE_DEPTH`].
fn node_of(module: &str) -> String {
    module
        .split("::")
        .filter(|s| !s.is_empty())
        .take(NODE_DEPTH)
        .collect::<Vec<_>>()
        .join("::")
}

/// The node a path (`backend::pool::Pool`) names: its longest prefix that is a node.
fn resolve(path: &[String], nodes: &BTreeSet<String>) -> Option<String> {
    (1..=path.len().min(NODE_DEPTH))
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|p| nodes.contains(p))
}

/// Whether one module is the other or contains it.
fn related(a: &str, b: &str) -> bool {
    let inside = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}::"));
    inside(a, b) || inside(b, a)
}

/// The cycles of a graph: for each strongly connected component of more than one node
/// (Tarjan), its members and the shortest cycle through each member that no cycle listed
/// before passes through.
fn cycles<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<(Vec<&'a str>, Vec<Vec<&'a str>>)> {
    struct Tarjan<'a, 'g> {
        graph: &'g BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Tarjan<'a, '_> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.graph.get(v).map(Vec::as_slice).unwrap_or(&[]) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut c = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    c.push(w);
                    if w == v {
                        break;
                    }
                }
                if c.len() > 1 {
                    c.sort();
                    self.components.push(c);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    let mut out: Vec<(Vec<&str>, Vec<Vec<&str>>)> = t
        .components
        .iter()
        .map(|c| {
            let mut covered: BTreeSet<&str> = BTreeSet::new();
            let mut found = Vec::new();
            for &start in c {
                if covered.contains(start) {
                    continue;
                }
                let path = shortest_cycle(graph, c, start);
                covered.extend(path.iter().copied());
                found.push(path);
            }
            (c.clone(), found)
        })
        .collect();
    out.sort();
    out
}

/// The shortest way from `start` back to itself inside `component` (breadth first).
fn shortest_cycle<'a>(
    graph: &BTreeMap<&'a str, Vec<&'a str>>,
    component: &[&'a str],
    start: &'a str,
) -> Vec<&'a str> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for &w in graph.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            if !component.contains(&w) {
                continue;
            }
            if w == start {
                last = Some(v);
                break 'search;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![start];
    let mut v = last.expect("a strongly connected component has a cycle through each node");
    while v != start {
        path.push(v);
        v = prev[v];
    }
    path.push(start);
    path.reverse();
    path
}

/// The module paths a file refers to (each `crate::…` or `super::…` path, groups expanded),
/// with the line it is on, relative to the crate root. `module` is the file's own module path.
fn references(text: &str, module: &str, roots: &[&str]) -> Vec<(Vec<String>, usize)> {
    let tokens = tokenize(&strip(text));
    let file_module: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    // Inline modules (`mod tests { … }`) change what `super` means: (name, brace depth).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if i + 2 < tokens.len() && tokens[i + 2].text == "{" => {
                inline.push((tokens[i + 1].text.clone(), depth));
            }
            _ => {}
        }
        let follows_path = i > 0 && matches!(tokens[i - 1].text.as_str(), "::" | "$");
        let is_root = roots.contains(&t.text.as_str()) || t.text == "super";
        if is_root && !follows_path && tokens.get(i + 1).is_some_and(|n| n.text == "::") {
            let mut base: Vec<String> = if t.text == "super" {
                let mut m = file_module.clone();
                m.extend(inline.iter().map(|(n, _)| n.clone()));
                m.pop();
                m
            } else {
                Vec::new()
            };
            let mut j = i + 2;
            // `super::super::…`
            while tokens.get(j).is_some_and(|t| t.text == "super")
                && tokens.get(j + 1).is_some_and(|t| t.text == "::")
            {
                base.pop();
                j += 2;
            }
            let (paths, end) = parse_tree(&tokens, j, base);
            out.extend(paths.into_iter().map(|p| (p, t.line)));
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

/// Parses a path tree after `prefix::` at token `j` (`a::b`, `a::{b, c::d}`, `*`, `self`):
/// the full paths it names and the token index after it.
fn parse_tree(tokens: &[Token], mut j: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        let Some(t) = tokens.get(j) else {
            return (vec![path], j);
        };
        if t.text == "{" {
            let mut all = Vec::new();
            j += 1;
            while tokens.get(j).is_some_and(|t| t.text != "}") {
                let (paths, end) = parse_tree(tokens, j, path.clone());
                all.extend(paths);
                j = end;
                // Skip `as alias` and anything else up to the separator.
                while tokens
                    .get(j)
                    .is_some_and(|t| t.text != "," && t.text != "}")
                {
                    j += 1;
                }
                if tokens.get(j).is_some_and(|t| t.text == ",") {
                    j += 1;
                }
            }
            return (all, j + 1);
        }
        if t.is_ident && t.text != "self" {
            path.push(t.text.clone());
        } else if t.text == "self" {
            // `{self, …}`: the prefix itself.
        } else {
            // `*`, or the end of the path.
            return (vec![path], if t.text == "*" { j + 1 } else { j });
        }
        j += 1;
        if tokens.get(j).is_some_and(|t| t.text == "::") {
            j += 1;
        } else {
            return (vec![path], j);
        }
    }
}

struct Token {
    text: String,
    is_ident: bool,
    line: usize,
}

/// Identifiers, `::` and single punctuation characters, with their line numbers.
fn tokenize(code: &str) -> Vec<Token> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Token {
                text: b[start..i].iter().collect(),
                is_ident: !c.is_ascii_digit(),
                line,
            });
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                is_ident: false,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                is_ident: false,
                line,
            });
            i += 1;
        }
    }
    out
}

/// The code with comments (line, block, doc), string and character literals blanked out;
/// newlines are kept so lines still count.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut level = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    level += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    level -= 1;
                    out.push_str("  ");
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && (i == 0 || !ident(b[i - 1])) && {
            let mut k = i + if c == 'b' { 2 } else { 1 };
            while b.get(k) == Some(&'#') {
                k += 1;
            }
            b.get(k) == Some(&'"')
        } {
            // A raw string: r"…", r#"…"#, br"…".
            let mut k = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while b[k] == '#' {
                hashes += 1;
                k += 1;
            }
            k += 1;
            out.push(' ');
            while k < b.len() {
                if b[k] == '"' && (1..=hashes).all(|h| b.get(k + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                blank(&mut out, b[k]);
                k += 1;
            }
            i = k;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            let mut k = i + 3;
            while k < b.len() && b[k] != '\'' {
                k += 1;
            }
            i = k + 1;
            out.push(' ');
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

// ----- the checker's own tests -----

/// A fake crate tree in a temporary directory: `(path under src, content)`.
fn fake_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    dir
}

const FAKE_LAYERS: &[(&str, &[&str])] = &[
    ("low", &["base", "net"]),
    ("mid", &["pool", "jobs", "app"]),
    ("high", &["api"]),
];

#[test]
fn the_checker_finds_a_cycle_and_names_it() {
    let dir = fake_tree(&[
        (
            "lib.rs",
            "pub mod base;\npub mod pool;\npub mod jobs;\npub mod app;\n",
        ),
        ("base.rs", "pub fn f() {}\n"),
        ("pool/mod.rs", "pub mod idle;\n"),
        // pool::idle → jobs → app → pool::idle; the grouped import must be expanded.
        (
            "pool/idle.rs",
            "use crate::{base::f, jobs::{self, current}};\npub fn g() { f(); current(); }\n",
        ),
        ("jobs.rs", "pub fn current() {\n    crate::app::run();\n}\n"),
        (
            "app.rs",
            "// crate::api::nothing is only a comment\npub fn run() {\n    \
             let _ = crate::pool::idle::g;\n}\n",
        ),
    ]);
    let r = check(&dir.path().join("src"), FAKE_LAYERS);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert!(p.starts_with("cycle: app → pool::idle → jobs → app"), "{p}");
    assert!(p.contains("pool::idle → jobs at src/pool/idle.rs:1"), "{p}");
    assert!(p.contains("jobs → app at src/jobs.rs:2"), "{p}");
    assert!(p.contains("app → pool::idle at src/app.rs:3"), "{p}");
}

#[test]
fn the_checker_finds_an_import_of_a_higher_layer() {
    let dir = fake_tree(&[
        ("lib.rs", "pub mod net;\npub mod api;\n"),
        ("net/mod.rs", "pub mod codec;\n"),
        (
            "net/codec.rs",
            "fn x() {\n\n    super::super::api::serve();\n}\n",
        ),
        ("api.rs", "use crate::net::codec;\npub fn serve() {}\n"),
    ]);
    let r = check(&dir.path().join("src"), FAKE_LAYERS);
    assert!(
        r.problems.iter().any(|p| p
            == "layer violation: net::codec (low) imports api (high), a higher layer, \
                       at src/net/codec.rs:3"),
        "{:?}",
        r.problems
    );
    // api → net::codec and net::codec → api is a cycle too.
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("cycle: api → net::codec → api")),
        "{:?}",
        r.problems
    );
}

#[test]
fn the_checker_ignores_comments_strings_and_visibility_and_knows_every_module() {
    let dir = fake_tree(&[
        ("lib.rs", "pub mod base;\npub mod api;\npub mod extra;\n"),
        (
            "base.rs",
            "//! Uses crate::api in its docs only.\n\
             /// crate::api::serve\n\
             /* crate::api /* nested crate::api */ still a comment crate::api */\n\
             pub(crate) fn f() -> &'static str { \"crate::api::serve\" }\n\
             fn g() -> char { '\\'' }\n\
             fn h() -> &'static str { r#\"crate::api \"quoted\" \"# }\n\
             macro_rules! m { () => { $crate::api::serve() } }\n\
             #[cfg(test)]\nmod tests {\n    use super::f;\n}\n",
        ),
        ("api.rs", "use crate::base;\npub fn serve() {}\n"),
        ("extra.rs", "pub fn e() {}\n"),
    ]);
    let r = check(&dir.path().join("src"), FAKE_LAYERS);
    assert_eq!(
        r.problems,
        vec![
            "module extra belongs to no layer: add it to LAYERS in tests/layers.rs and to \
             docs/architecture.md"
                .to_string()
        ]
    );
    let edges: Vec<_> = r.edges.keys().cloned().collect();
    assert_eq!(edges, vec![("api".to_string(), "base".to_string())]);
}

#[test]
fn a_module_and_its_submodules_are_one_unit_and_deep_files_join_their_module() {
    let dir = fake_tree(&[
        ("lib.rs", "pub mod app;\npub mod pool;\n"),
        (
            "app/mod.rs",
            "pub mod session;\nuse crate::app::session::serve;\n",
        ),
        (
            "app/session/mod.rs",
            "mod relay;\nuse super::*;\nuse crate::app::X;\n",
        ),
        (
            "app/session/relay.rs",
            "use crate::pool::get;\nuse super::*;\n",
        ),
        ("pool.rs", "pub fn get() {}\n"),
    ]);
    let r = check(&dir.path().join("src"), FAKE_LAYERS);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let edges: Vec<_> = r.edges.keys().cloned().collect();
    assert_eq!(
        edges,
        vec![
            ("app".to_string(), "app::session".to_string()),
            ("app::session".to_string(), "app".to_string()),
            ("app::session".to_string(), "pool".to_string()),
        ]
    );
}
