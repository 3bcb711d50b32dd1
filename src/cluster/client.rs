//! Building kube clients from a kubeconfig file or, without one, from the in-cluster service account, as
//! Kubernetes' generic API servers do for `--kubeconfig`, `--authentication-kubeconfig` and
//! `--authorization-kubeconfig`.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file is unreadable or invalid.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No file was given and the process does not run in a pod.
    #[error(
        "no kubeconfig given and no in-cluster configuration ({0}): pass --kubeconfig, or --standalone to run without a cluster"
    )]
    NotInCluster(String),
    /// The configuration could not make a client.
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from `kubeconfig` (its current context), or from the in-cluster configuration when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let error = |message: String| ClientError::Kubeconfig { path: path.to_path_buf(), message };
            let file = Kubeconfig::read_from(path).map_err(|e| error(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| error(e.to_string()))?
        }
        None => kube::Config::incluster().map_err(|e| ClientError::NotInCluster(e.to_string()))?,
    };
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kubeconfig_file_gives_a_client_for_its_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
        )
        .unwrap();
        let client = client(Some(&path)).await.unwrap();
        assert_eq!(client.default_namespace(), "default");
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named_in_the_error() {
        let Err(error) = client(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("a client was built from a missing file");
        };
        assert!(error.to_string().contains("/nonexistent/kubeconfig"), "{error}");
    }
}
