//! Placeholder: the ceiling server of the benchmark (bench/README.md).

fn main() {}
