//! The crate graph is the architecture, and this test holds it to what the crates'
//! docs say (read from `cargo metadata`, so it sees exactly what Cargo builds):
//!
//! - each workspace crate depends (normally, or to build) only on the workspace
//!   crates its row below allows: the two services never on each other, the
//!   contract (`shared-events`) and this domain-free crate (`plumbing`) on none;
//!   dev-dependencies may add the test helpers (`test-support`);
//! - no source file belongs to two crates: no `#[path]` attribute anywhere, and
//!   every target's root file lies inside its own crate's folder;
//! - plumbing's sources name no domain type (no event, order, book, account or
//!   projection), nor the contract crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which workspace crates each workspace crate may depend on (normal and build
/// dependencies). A crate missing here may not exist: add its row, with a reason.
const ALLOWED: &[(&str, &[&str])] = &[
    // The contract: events, codec, state schema, OpenAPI. Depends on nothing of ours.
    ("shared-events", &[]),
    // Domain-free plumbing: depends on nothing of ours.
    ("plumbing", &[]),
    // The two services: the contract and the plumbing, never each other.
    ("command-svc", &["shared-events", "plumbing"]),
    ("query-svc", &["shared-events", "plumbing"]),
    // The front door runs both services in combined mode.
    (
        "gateway",
        &["shared-events", "plumbing", "command-svc", "query-svc"],
    ),
    // The simulation drives both services' real code on a simulated disk.
    (
        "foldbook-sim",
        &["shared-events", "command-svc", "query-svc"],
    ),
    // The benchmark programs start the binaries; they share the test helpers.
    ("foldbook-bench", &["shared-events", "test-support"]),
    // Helpers of black-box tests: processes and HTTP, nothing of the product.
    ("test-support", &[]),
];

/// Crates any crate may use for its tests only.
const DEV_ONLY: &[&str] = &["test-support"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("plumbing/ is inside the workspace")
        .to_path_buf()
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn every_dependency_between_workspace_crates_is_an_allowed_one() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let Some(may) = allowed.get(name) else {
            problems.push(format!(
                "{name} is a workspace crate without a row in ALLOWED"
            ));
            continue;
        };
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if !ours.contains(&dep_name) {
                continue;
            }
            let dev = dep["kind"].as_str() == Some("dev");
            let ok = may.contains(&dep_name) || (dev && DEV_ONLY.contains(&dep_name));
            if !ok {
                problems.push(format!(
                    "{name} depends on {dep_name}{}, which its row does not allow",
                    if dev { " (dev)" } else { "" }
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "crate graph:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_rules_hold_the_services_apart() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    assert!(!allowed["command-svc"].contains(&"query-svc"));
    assert!(!allowed["query-svc"].contains(&"command-svc"));
    assert!(allowed["plumbing"].is_empty());
    assert!(allowed["shared-events"].is_empty());
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading a source folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_belongs_to_two_crates() {
    let meta = metadata();
    let mut problems = Vec::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
        let dir = manifest.parent().expect("a crate folder");
        for target in package["targets"].as_array().expect("targets") {
            let root = PathBuf::from(target["src_path"].as_str().expect("src_path"));
            if !root.starts_with(dir) {
                problems.push(format!(
                    "{name}: target {} is outside the crate: {}",
                    target["name"],
                    root.display()
                ));
            }
        }
        let mut files = Vec::new();
        rust_files(dir, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("reading a source file");
            // Split so that this file does not find itself.
            let attribute = concat!("#[", "path");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with(attribute) {
                    problems.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "a source file compiled into another crate (give the code one home):\n  {}",
        problems.join("\n  ")
    );
}

/// Names of the domain's types: none of them may appear in plumbing's code.
const DOMAIN_TYPES: &[&str] = &[
    "shared_events",
    "Envelope",
    "OrderPlaced",
    "OrderCancelled",
    "Order",
    "OrderView",
    "Fill",
    "Side",
    "Book",
    "BookState",
    "BookView",
    "ReadModel",
    "WriteModel",
    "TradeView",
    "Trade",
    "Account",
    "Balance",
    "Market",
    "Projection",
];

#[test]
fn plumbing_names_no_domain_type() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() >= 5,
        "found plumbing's sources in {}",
        src.display()
    );
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        for (n, line) in text.lines().enumerate() {
            // Code only: comments may say what the crate is not about.
            let code = line.split("//").next().unwrap_or("");
            for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if DOMAIN_TYPES.contains(&word) {
                    problems.push(format!("{}:{}: {word}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "domain types in plumbing (move the code to the crate that owns them):\n  {}",
        problems.join("\n  ")
    );
}
