//! Resource mapping from the cluster's discovery.
