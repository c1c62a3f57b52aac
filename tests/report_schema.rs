//! Every `--output json` report, success or failure, validates against the documented schema
//! `docs/report.schema.json` (checked with Python's `jsonschema`, installed with the set-up).

mod common;
use common::*;
use std::process::{Command, Stdio};

fn validate(reports: &[(String, String)]) {
    let schema = format!("{REPO}/docs/report.schema.json");
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
bad = 0
for name, doc in json.load(sys.stdin):
    for e in v.iter_errors(json.loads(doc)):
        bad += 1
        print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
sys.exit(1 if bad else 0)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, &schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    serde_json::to_writer(child.stdin.take().unwrap(), reports).unwrap();
    let out = child.wait_with_output().unwrap();
    if String::from_utf8_lossy(&out.stderr).contains("No module named 'jsonschema'") {
        skip("python3 jsonschema (scripts/setup.sh installs it)");
        return;
    }
    assert!(
        out.status.success(),
        "reports do not match docs/report.schema.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_json_report_matches_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    std::fs::create_dir_all(host.join("etc")).unwrap();
    let b = bundle(tmp.path(), "4.1.0");
    let (h, b) = (host.to_str().unwrap(), b.to_str().unwrap());
    let runs: Vec<(&str, Vec<&str>, i32)> = vec![
        ("status before", vec!["status", "--bundle", b], 0),
        (
            "install dry",
            vec!["install", "--bundle", b, "--dry-run"],
            0,
        ),
        ("install", vec!["install", "--bundle", b], 0),
        ("install again", vec!["install", "--bundle", b], 0),
        ("status", vec!["status", "--bundle", b], 0),
        ("config show", vec!["config", "show"], 0),
        ("bad bundle", vec!["cni", "--bundle", "/nonexistent"], 2),
        ("ovs health", vec!["ovs", "health"], 1),
        ("cleanup dry", vec!["cleanup", "--dry-run"], 0),
        ("cleanup", vec!["cleanup"], 0),
        ("usage error", vec!["install", "--no-such-flag"], 2),
    ];
    let mut reports = Vec::new();
    for (name, args, code) in runs {
        let mut a = vec!["--host-root", h, "--output", "json"];
        a.extend(args);
        let r = run(&a);
        assert_eq!(r.code, code, "{name}: {}", r.stderr);
        let v: serde_json::Value =
            serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {}", r.stdout));
        // duration_ms is rounded to microseconds.
        for s in v["steps"].as_array().unwrap() {
            let d = s["duration_ms"].as_f64().unwrap();
            assert!(
                ((d * 1000.0).round() - d * 1000.0).abs() < 1e-6,
                "{name}: {d}"
            );
        }
        reports.push((name.to_string(), r.stdout));
    }
    validate(&reports);
}
