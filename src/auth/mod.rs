//! Delegated authentication and authorization, as Kubernetes' aggregated API servers do them (wire-contract §6.2,
//! §6.3). Pure logic over small traits; the kube-backed reviewers live in [`crate::cluster`].
