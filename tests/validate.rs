//! Validation: every malformed experiment gets line:column errors (all of them at once), hostile
//! files are rejected without panics or unbounded memory, and every shipped experiment is valid.

use faultline::spec;
use faultline_tests::{faultline, workspace_root};

fn render(path: &std::path::Path) -> String {
    let source = std::fs::read_to_string(path).ok();
    match spec::load_file(path) {
        Ok(plan) => format!("valid: {}", plan.name),
        Err(diags) => diags
            .iter()
            .map(|d| d.render(source.as_deref()))
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// One snapshot per fixture; paths are made relative so snapshots do not depend on the checkout.
#[test]
fn invalid_fixtures_snapshot() {
    insta::glob!("fixtures/invalid/*.yaml", |path| {
        let rendered = render(path);
        let root = workspace_root().join("tests").display().to_string();
        insta::assert_snapshot!(rendered.replace(&root, "tests"));
    });
}

#[test]
fn many_problems_are_all_reported() {
    let path = workspace_root().join("tests/fixtures/invalid/many-problems.yaml");
    let source = std::fs::read_to_string(&path).unwrap_or_default();
    let marked = source.lines().filter(|l| l.contains("# PROBLEM")).count();
    let diags = spec::load_file(&path).expect_err("fixture must be invalid");
    assert!(
        diags.len() >= marked,
        "expected at least {marked} problems, got {}:\n{diags:#?}",
        diags.len()
    );
    for (index, line) in source.lines().enumerate() {
        if line.contains("# PROBLEM") {
            let line_no = index as u64 + 1;
            assert!(
                diags.iter().any(|d| d.line == line_no),
                "no problem reported on line {line_no}: {line}"
            );
        }
    }
}

#[test]
fn shipped_experiments_are_valid() {
    let root = workspace_root().join("experiments");
    let mut seen = 0;
    for dir in std::fs::read_dir(&root)
        .expect("experiments/ exists")
        .flatten()
    {
        for file in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if file.path().extension().is_some_and(|e| e == "yaml") {
                if let Err(diags) = spec::load_file(&file.path()) {
                    panic!("{} is invalid:\n{diags:#?}", file.path().display());
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "expected experiments under {}", root.display());
}

/// Hostile inputs: each must be rejected with a message; none may panic or run away.
#[test]
fn hostile_inputs_are_rejected() {
    let alias_bomb = {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let prev = (b'a' + level - 1) as char;
            let this = (b'a' + level) as char;
            s.push_str(&format!("{this}: &{this} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        s
    };
    let deep = format!("name: {}x{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let deep_block = (0..5_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect::<String>();
    let long_line = format!("name: {}\n", "x".repeat(3 * 1024 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("alias bomb", alias_bomb),
        ("deep flow nesting", deep),
        ("deep block nesting", deep_block),
        ("multi-megabyte line", long_line),
        ("binary", "name: \u{0}\u{1}\u{2}".into()),
        ("only a comment", "# nothing\n".into()),
        ("a scalar document", "42\n".into()),
        ("a list document", "- a\n- b\n".into()),
        ("tabs", "name:\tx\n\tverifies: []\n".into()),
    ];
    for (what, text) in cases {
        let result = std::panic::catch_unwind(|| spec::validate_str("hostile.yaml", &text));
        match result {
            Ok(Err(diags)) => assert!(
                !diags.is_empty() && !diags[0].message.is_empty(),
                "{what}: empty diagnostics"
            ),
            Ok(Ok(_)) => panic!("{what}: accepted"),
            Err(_) => panic!("{what}: panicked"),
        }
    }
    // Non-UTF-8 bytes through the file path, with a position.
    let dir = std::env::temp_dir().join(format!("faultline-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("latin1.yaml");
    std::fs::write(&file, b"name: caf\xe9\n").expect("write");
    let diags = spec::load_file(&file).expect_err("non-UTF-8 must be rejected");
    assert_eq!((diags[0].line, diags[0].column), (1, 10), "{diags:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The CLI contract: invalid input exits 2 with file:line:column on stderr; valid exits 0.
#[test]
fn cli_validate_exit_codes() {
    let bad = faultline(&[
        "validate",
        "tests/fixtures/invalid/many-problems.yaml",
        "tests/fixtures/invalid/syntax-error.yaml",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("tests/fixtures/invalid/many-problems.yaml:3:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tests/fixtures/invalid/syntax-error.yaml:"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let good = faultline(&[
        "validate",
        "experiments/000-music-streaming/circuit-breaker.yaml",
    ]);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let usage = faultline(&["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    let plan = faultline(&[
        "plan",
        "experiments/000-music-streaming/circuit-breaker.yaml",
    ]);
    assert_eq!(plan.status.code(), Some(0));
    let text = String::from_utf8_lossy(&plan.stdout);
    for needle in [
        "timeline:",
        "apply latency `recs-degraded`",
        "playback->recommendations",
        "assertions:",
    ] {
        assert!(
            text.contains(needle),
            "plan output lacks `{needle}`:\n{text}"
        );
    }
}
