//! The binary starts, documents every subcommand, and reports bad usage with a non-zero exit code.

use std::process::Command;

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .expect("decal binary should run")
}

#[test]
fn help_lists_every_subcommand() {
    let out = decal(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "quickstart",
        "metrics",
        "calibrate",
        "data",
        "train",
        "eval",
        "import",
        "run",
        "report",
    ] {
        assert!(
            text.contains(sub),
            "`decal --help` does not mention {sub}:\n{text}"
        );
    }
}

#[test]
fn unknown_subcommand_fails() {
    let out = decal(&["no-such-command"]);
    assert!(!out.status.success());
}

#[test]
fn libtorch_is_found_through_the_embedded_rpath() {
    // `decal --version` links libtorch (tch) and must start without LD_LIBRARY_PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_decal"))
        .arg("--version")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
