//! A lease object from the store: parsed, and described the way `unlock`
//! and the lock messages show it.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::repo::lock::{parse_lease, LeaseContent};

fuzz_target!(|data: &[u8]| {
    if let LeaseContent::Lease(l) = parse_lease(data) {
        let _ = l.describe();
    }
});
