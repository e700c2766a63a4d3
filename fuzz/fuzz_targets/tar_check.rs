//! A tree artifact after decompression: restore's pre-check (the dry run)
//! reads every entry through the metadata cap and the path checks without
//! writing anything.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::restore::extract::{extract_tree, ExtractOptions};

fuzz_target!(|data: &[u8]| {
    let opts = ExtractOptions {
        force: false,
        include: Vec::new(),
        validate_rrd: true,
        dry_run: true,
        same_owner: false,
        check_room: false,
    };
    // A destination that does not exist: every entry is new, nothing is
    // touched.
    let dest = std::path::Path::new("/nonexistent/ccbackup-fuzz-dest");
    let _ = extract_tree(data, dest, &opts);
});
