//! The Dockerfile agrees with the program: its image labels (`org.opencontainers.image.*`) carry the crate's
//! version, the commit build.rs stamps into `--version`, and the README's licence. No container engine runs in the
//! tests: this reads the file.

fn dockerfile() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap()
}

/// The image's labels: `key="value"` pairs of the LABEL instruction (with its `\` continuations).
fn labels(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    let line = joined.lines().find(|line| line.starts_with("LABEL ")).expect("no LABEL instruction");
    let mut labels = Vec::new();
    let mut rest = line.trim_start_matches("LABEL ").trim();
    while let Some((key, value)) = rest.split_once("=\"") {
        let (value, after) = value.split_once('"').unwrap();
        labels.push((key.trim().to_string(), value.to_string()));
        rest = after.trim();
    }
    labels
}

/// The default of `ARG name=...` before the first stage.
fn arg_default(text: &str, name: &str) -> String {
    let prefix = format!("ARG {name}=");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix}")).to_string()
}

#[test]
fn the_image_is_labelled_with_its_version_commit_and_licence() {
    let text = dockerfile();
    let labels = labels(&text);
    let keys: Vec<&str> = labels.iter().map(|(key, _)| key.as_str()).collect();
    let oci = |name: &str| format!("org.opencontainers.image.{name}");
    for name in ["title", "description", "version", "revision", "licenses"] {
        assert!(keys.contains(&oci(name).as_str()), "no {} label: {keys:?}", oci(name));
    }
    assert!(keys.iter().all(|key| key.starts_with("org.opencontainers.image.")), "{keys:?}");
    let label = |name: &str| labels.iter().find(|(key, _)| *key == oci(name)).unwrap().1.clone();
    assert_eq!(label("title"), env!("CARGO_PKG_NAME"));
    assert_eq!(label("version"), "${VERSION}");
    assert_eq!(arg_default(&text, "VERSION"), env!("CARGO_PKG_VERSION"), "the label's version is the crate's");
    assert_eq!(label("revision"), "${GIT_COMMIT}");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let licence = readme.split("## License").nth(1).unwrap().trim();
    assert_eq!(label("licenses"), licence);
}

#[test]
fn the_commit_build_argument_reaches_the_build_script() {
    let text = dockerfile();
    assert_eq!(arg_default(&text, "GIT_COMMIT"), "unknown");
    // Both stages declare the argument (an ARG before the first FROM is not visible inside a stage).
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    assert_eq!(stages.len(), 2);
    for stage in &stages {
        assert!(stage.lines().any(|line| line == "ARG GIT_COMMIT"), "a stage does not declare GIT_COMMIT");
    }
    assert!(stages[0].contains("COPY build.rs ./"), "build.rs must be in the build context");
    assert!(
        stages[0].contains("CUSTOM_METRICS_GIT_COMMIT=\"${GIT_COMMIT}\" cargo build --release"),
        "the release build must see the commit"
    );
    let ignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.dockerignore")).unwrap();
    assert!(!ignore.lines().any(|line| line.trim() == "build.rs"));
}
