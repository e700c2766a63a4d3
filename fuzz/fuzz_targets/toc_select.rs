//! What `pg_restore --list --verbose` prints for an archive from the store
//! (names and dependencies are the archive's), through the listing parser
//! and the `restore --table`/`--schema` selection.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::pg::toc_list;
use ccbackup::restore::select::{select, TableRequest, TargetFacts};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(entries) = toc_list::parse(&text) {
        let req = TableRequest {
            tables: vec![("app".into(), "racks".into())],
            schemas: vec!["public".into()],
        };
        let _ = select(&entries, &req, &TargetFacts::new_database());
    }
});
