//! `railbox inspect` and `railbox transports`: what a transport is, what it
//! imports and what it may reach.
//!
//! Imports are grouped into capabilities (HTTP, AWS signing, byte stream,
//! logging) and the WASI baseline every Rust guest imports whether it uses
//! it or not, which railbox links with nothing granted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::bindings::types::{Description, StreamSource};
use crate::cli::Failure;
use crate::connect::{self, Request};
use crate::engine::Runtime;
use crate::policy::PolicyFile;
use crate::registry;
use crate::target::type_name;
use crate::transport::{Source, Transport, is_provided};

/// What an import gives a transport.
pub fn capability_of(import: &str) -> &'static str {
    let name = import.split('@').next().unwrap_or(import);
    match name {
        "wasi:http/outgoing-handler" | "wasi:http/types" => "outgoing HTTP",
        "railbox:transport/aws" => "AWS settings and signing",
        "railbox:transport/byte-stream" => "byte stream",
        "railbox:transport/logging" => "logging",
        "railbox:transport/types" => "contract types",
        _ if name.starts_with("wasi:sockets/") => "raw sockets (not provided)",
        _ if is_provided(name) => "WASI baseline (nothing granted)",
        _ => "not provided",
    }
}

/// `railbox inspect FILE`.
pub async fn inspect(
    runtime: &Arc<Runtime>,
    file: &Path,
    target: Option<&str>,
    policy: Option<PolicyFile>,
    as_json: bool,
) -> Result<u8, Failure> {
    let wasm = std::fs::read(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    let label = file.display().to_string();
    let digest = hex::encode(Sha256::digest(&wasm));
    let imports = list_imports(runtime, &wasm);
    let loaded = Transport::load(runtime, &wasm, Source::File(file.to_path_buf()), &label).await;
    let transport = match loaded {
        Ok(t) => t,
        Err(e) => {
            if let Ok(imports) = &imports {
                print_imports(imports, as_json, &digest);
            }
            return Err(Failure::usage(e));
        }
    };
    let imports = imports.unwrap_or_default();
    let effective = match target {
        Some(url) => {
            let request = Request {
                url: url.to_string(),
                policy,
                ..Request::default()
            };
            let url = crate::target::parse_url(url).map_err(Failure::usage)?;
            let prepared = connect::prepare_with(runtime, transport, &url, &request)
                .await
                .map_err(Failure::from)?;
            let policy = serde_json::to_value(&prepared.policy).unwrap_or_default();
            (Some(policy), prepared.transport)
        }
        None => (None, transport),
    };
    let (policy, transport) = effective;
    let report = json!({
        "file": label,
        "sha256": digest,
        "contract": format!("{}@{}", crate::bindings::PACKAGE, transport.contract()),
        "description": description_json(transport.description()),
        "imports": imports_json(&imports),
        "default_policy": needs_json(transport.description()),
        "effective_policy": policy,
    });
    if as_json {
        println!("{report:#}");
    } else {
        print_report(&report, transport.description());
    }
    Ok(0)
}

fn list_imports(runtime: &Runtime, wasm: &[u8]) -> Result<Vec<String>, String> {
    let component = Component::new(runtime.engine(), wasm).map_err(|e| e.to_string())?;
    let ty = component.component_type();
    Ok(ty
        .imports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect())
}

fn imports_json(imports: &[String]) -> Value {
    imports
        .iter()
        .map(|i| json!({ "import": i, "capability": capability_of(i) }))
        .collect()
}

fn print_imports(imports: &[String], as_json: bool, digest: &str) {
    if as_json {
        println!(
            "{:#}",
            json!({ "sha256": digest, "imports": imports_json(imports) })
        );
    } else {
        println!("sha256: {digest}");
        println!("imports:");
        for import in imports {
            println!("  {import:<44} {}", capability_of(import));
        }
    }
}

fn description_json(d: &Description) -> Value {
    json!({
        "name": d.name,
        "version": d.version,
        "summary": d.summary,
        "schemes": d.schemes,
        "options": d.options.iter().map(|o| json!({
            "name": o.name,
            "type": type_name(o.type_),
            "default": o.default,
            "secret": o.secret,
            "doc": o.doc,
        })).collect::<Vec<_>>(),
    })
}

fn needs_json(d: &Description) -> Value {
    json!({
        "http": d.needs.http,
        "aws": d.needs.aws.iter().map(|a| json!({
            "service": a.signing_name,
            "actions": a.actions,
            "endpoint": format!("https://{}.{{region}}.amazonaws.com, or the user's override", a.endpoint_prefix),
        })).collect::<Vec<_>>(),
        "streams": d.needs.streams.iter().map(|s| json!({
            "scheme": s.scheme,
            "source": match s.source {
                StreamSource::DevicePath => "the device path in the URL",
                StreamSource::TcpAddress => "the host and port in the URL",
            },
        })).collect::<Vec<_>>(),
    })
}

fn print_report(report: &Value, d: &Description) {
    println!("transport: {} {} ({})", d.name, d.version, d.summary);
    println!("file:      {}", report["file"].as_str().unwrap_or_default());
    println!(
        "sha256:    {}",
        report["sha256"].as_str().unwrap_or_default()
    );
    println!(
        "contract:  {}",
        report["contract"].as_str().unwrap_or_default()
    );
    println!("schemes:   {}", d.schemes.join(", "));
    println!("options:");
    for o in &d.options {
        let default = o
            .default
            .as_deref()
            .map(|v| format!(" = {v}"))
            .unwrap_or_default();
        let secret = if o.secret { " (secret)" } else { "" };
        println!(
            "  {:<20} {:<8}{default}{secret}  {}",
            o.name,
            type_name(o.type_),
            o.doc
        );
    }
    println!("imports:");
    for import in report["imports"].as_array().into_iter().flatten() {
        println!(
            "  {:<44} {}",
            import["import"].as_str().unwrap_or_default(),
            import["capability"].as_str().unwrap_or_default()
        );
    }
    println!("default policy (from the description):");
    print_indented(&report["default_policy"]);
    if !report["effective_policy"].is_null() {
        println!("effective policy for the target:");
        print_indented(&report["effective_policy"]);
    }
}

fn print_indented(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    for line in text.lines() {
        println!("  {line}");
    }
}

/// `railbox transports`.
pub async fn list(runtime: &Arc<Runtime>, extra: &[PathBuf], as_json: bool) -> Result<u8, Failure> {
    let mut rows = Vec::new();
    let mut seen_schemes: Vec<String> = Vec::new();
    for candidate in registry::candidates(extra) {
        match candidate.load(runtime).await {
            Ok(t) => {
                let d = t.description();
                let shadowed: Vec<_> = d
                    .schemes
                    .iter()
                    .filter(|s| seen_schemes.contains(s))
                    .cloned()
                    .collect();
                seen_schemes.extend(d.schemes.iter().cloned());
                rows.push(json!({
                    "name": d.name,
                    "version": d.version,
                    "summary": d.summary,
                    "schemes": d.schemes,
                    "source": t.source().to_string(),
                    "sha256": t.digest(),
                    "contract": t.contract(),
                    "shadowed_schemes": shadowed,
                    "options": description_json(d)["options"],
                }));
            }
            Err(e) => rows.push(json!({ "source": candidate.label, "error": e.to_string() })),
        }
    }
    if as_json {
        println!("{:#}", Value::Array(rows));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no transports found");
    }
    for row in &rows {
        if let Some(error) = row["error"].as_str() {
            println!(
                "{}: unusable: {error}",
                row["source"].as_str().unwrap_or_default()
            );
            continue;
        }
        let schemes: Vec<&str> = row["schemes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{} {}  schemes: {}  sha256: {}  ({})",
            row["name"].as_str().unwrap_or_default(),
            row["version"].as_str().unwrap_or_default(),
            schemes.join(", "),
            &row["sha256"].as_str().unwrap_or_default()[..12],
            row["source"].as_str().unwrap_or_default(),
        );
        println!("    {}", row["summary"].as_str().unwrap_or_default());
        for o in row["options"].as_array().into_iter().flatten() {
            let mut doc = o["doc"].as_str().unwrap_or_default().to_string();
            if o["secret"] == true {
                doc.push_str(" (secret)");
            } else if let Some(default) = o["default"].as_str() {
                doc.push_str(&format!(" [default: {default}]"));
            }
            println!(
                "    {:<20} {:<8} {doc}",
                o["name"].as_str().unwrap_or_default(),
                o["type"].as_str().unwrap_or_default(),
            );
        }
    }
    Ok(0)
}
