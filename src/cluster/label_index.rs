//! The label index: metadata-only watches of the resource types that have stored metrics.
