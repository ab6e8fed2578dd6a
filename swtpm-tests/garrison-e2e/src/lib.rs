//! End-to-end tests of Garrison live in `tests/`: a real site attestor (in-process, real
//! TLS, real SQLite or PostgreSQL log), real agents, and one swtpm per node with a real
//! machine's boot log replayed into it. This library is empty on purpose.
#![forbid(unsafe_code)]
