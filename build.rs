//! Stamps the git commit into the program (`--version`, the `/version` document's `gitCommit`) as the compile-time
//! variable `CUSTOM_METRICS_GIT_COMMIT`: the environment variable of that name when set (the Dockerfile passes its
//! `GIT_COMMIT` build argument: the image is built without `.git`), else `git rev-parse HEAD` of this checkout,
//! else `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

const VARIABLE: &str = "CUSTOM_METRICS_GIT_COMMIT";

fn main() {
    println!("cargo:rerun-if-env-changed={VARIABLE}");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var(VARIABLE)
        .ok()
        .map(|commit| commit.trim().to_string())
        .filter(|commit| !commit.is_empty())
        .or_else(|| git_commit(&dir))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env={VARIABLE}={commit}");
}

/// `git` run in `dir`, its trimmed output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// HEAD's commit; the build runs again when HEAD moves (a commit, a checkout: HEAD, the branch it names, or the
/// packed refs change). Works in worktrees, whose `.git` is a file.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "HEAD"])?;
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}
