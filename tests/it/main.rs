//! Integration tests: one binary, modules per area, to keep link time down.
