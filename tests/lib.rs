//! Nothing: this package is carafe's integration tests (the other files
//! here, each its own test target) and benchmarks (`../benches`).
