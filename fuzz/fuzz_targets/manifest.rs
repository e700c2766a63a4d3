//! A manifest read from the store: JSON parse, then the checks that decide
//! whether it may describe the backup directory it was found in.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::repo::manifest;

fuzz_target!(|data: &[u8]| {
    let key = "job/20261201T020000Z-abcdef/manifest.json";
    if let Ok(m) = manifest::parse(data, key) {
        let _ = manifest::check_location(&m, "job", "20261201T020000Z-abcdef");
        let _ = manifest::check_location(&m, &m.job, &m.id);
        let _ = (m.stored_bytes(), m.raw_bytes(), m.source_names());
    }
});
