//! Building the kube client from in-cluster configuration or kubeconfig files.
