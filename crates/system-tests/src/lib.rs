//! End-to-end tests of OpenWatch (in `tests/`): the service binaries run as processes over
//! one test database, broker prefix and Redis prefix, and scan real sshd targets on
//! 127.0.0.x. The binaries are found next to the test executable, so run
//! `cargo build --bins` (or `cargo nextest run --workspace`, which builds them) first.
