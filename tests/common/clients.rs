//! The real clients of e2e/clients (Go programs built by e2e/clients/build from the Go module proxy and cached
//! outside the repository), and running a client to its end.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The client e2e/clients/build names on its line `{variable}=…` (building it, or finding it in the cache); `None`,
/// saying why, when `go` is not installed (`test` says which test needs it).
pub fn go_client(variable: &str, test: &str) -> Option<PathBuf> {
    if Command::new("go").arg("version").output().is_err() {
        eprintln!("SKIPPED: `go` is not installed; the {test} test needs it (CI has it)");
        return None;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("e2e/clients/build");
    let output = Command::new(&script).output().unwrap();
    assert!(output.status.success(), "e2e/clients/build failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let prefix = format!("{variable}=");
    let bin = stdout.lines().find_map(|line| line.strip_prefix(prefix.as_str()));
    Some(PathBuf::from(bin.unwrap_or_else(|| panic!("e2e/clients/build printed no {prefix}: {stdout}"))))
}

/// Runs `command` to its end and asserts that it succeeded, its output in the message otherwise; gives the output.
pub async fn run(command: &mut tokio::process::Command) -> Output {
    let output = command.output().await.unwrap();
    let std = command.as_std();
    assert!(
        output.status.success(),
        "{} {:?}: {}{}",
        std.get_program().display(),
        std.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
