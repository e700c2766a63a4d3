//! A pg_dump custom-format archive as the row counter sees it while the dump
//! streams by, fed in the chunk sizes the first byte chooses.
#![no_main]
use libfuzzer_sys::fuzz_target;

use ccbackup::backup::source::pgcount::RowCounter;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut counter = RowCounter::new();
    for piece in rest.chunks(chunk) {
        counter.feed(piece);
    }
    let _ = counter.finish();
});
