//! The authentication configuration from ConfigMap kube-system/extension-apiserver-authentication, watched.
