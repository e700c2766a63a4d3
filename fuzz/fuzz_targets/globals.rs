//! `pg_dumpall --globals-only` output from the store: split into statements
//! and checked against the allow-list before anything reaches the server.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::restore::globals;

fuzz_target!(|data: &[u8]| {
    if let Ok(checked) = globals::check_all(std::io::Cursor::new(data)) {
        for c in &checked {
            let _ = globals::redacted(&c.stmt);
        }
    }
});
