//! Row counts read from a `pg_dump --format=custom --compress=0` archive
//! while it streams past, so counting costs the server nothing.
//!
//! The custom format (pg_dump's `pg_backup_archiver.c` and
//! `pg_backup_custom.c`) is: a header (`PGDMP`, version, integer and offset
//! sizes, format, compression, creation time, database and version
//! strings), a table of contents (one entry per object: dump id, tag, desc
//! such as `TABLE DATA`, namespace, ...), then one data block per entry that
//! has data: a block type (1 = table data, 3 = large objects), the entry's
//! dump id and length-prefixed chunks ending with an empty one. Integers
//! are a sign byte and `int_size` little-endian bytes; strings are an
//! integer length (-1 for NULL) and the bytes.
//!
//! Uncompressed table data is the COPY text of the table, where every row
//! ends with a newline and newlines inside values are escaped (`\n`), so
//! rows are newlines, less pg_dump's end marker (`\.` and two empty lines)
//! at the end of each table's data. Tables are named by their `TABLE DATA`
//! entries; one without a `TABLE` entry is an extension's configuration
//! table, which `count_rows` leaves out, so it is left out here too.
//! Partitioned parents have no data, their partitions do: the same set
//! `count_rows` returns. The parser is a byte-driven state machine: it keeps
//! only the entry being read (names capped at `MAX_KEPT` bytes, every
//! other string skipped without buffering) and one map entry per table, so
//! its memory does not depend on the size of the dump.
//!
//! Anything unexpected (another archive version, compressed data, a
//! truncated or garbled stream) makes [`RowCounter::finish`] return an
//! error; the caller records no counts rather than wrong ones.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::repo::manifest::TableRows;

mod lex;
mod rows;
mod toc;

use lex::{Need, Text};
use rows::Tail;
use toc::{name_decoder, DataEntry, Entry, Step};

/// Longest string kept from the TOC (tags, descs, namespaces). Names are
/// at most 63 bytes; longer tags belong to objects we do not need.
const MAX_KEPT: usize = 1024;
/// Archive versions whose layout this parser knows. 1.14 (pg_dump 12 to
/// 15) and 1.16 (17, 18) are tested against real dumps; 1.15 (16) only
/// against archives the unit tests build.
const MIN_MINOR: u8 = 12;
const MAX_MINOR: u8 = 16;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// `archCustom` in pg_backup.h.
const FORMAT_CUSTOM: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    #[error("the dump is not a pg_dump custom-format archive")]
    NotCustom,
    #[error(
        "archive version {0}.{1}.{2} is not one ccbackup can read (1.{MIN_MINOR} to 1.{MAX_MINOR})"
    )]
    Version(u8, u8, u8),
    #[error("archive integer size {0} / offset size {1} is not supported")]
    Sizes(u8, u8),
    #[error("archive table data is compressed, so its rows cannot be counted")]
    Compressed,
    #[error("malformed archive at byte {at}: {what}")]
    Malformed { at: u64, what: String },
    #[error("archive ended at byte {at} in the middle of {what}")]
    Truncated { at: u64, what: &'static str },
    #[error("archive has no data block for {what} (dump id {id})")]
    MissingData { id: i64, what: String },
    #[error("table names in encoding {0} cannot be converted to UTF-8")]
    Encoding(String),
}

/// One table-of-contents entry, as `pg_restore -l` lists it (names as the
/// archive stores them: bytes in the dump's encoding, `None` when NULL or
/// longer than [`MAX_KEPT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub dump_id: i64,
    pub desc: Vec<u8>,
    pub namespace: Option<Vec<u8>>,
    pub tag: Option<Vec<u8>>,
    pub owner: Option<Vec<u8>>,
}

/// A `Write` that passes everything to `inner` and counts rows in what
/// `inner` accepted.
pub struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    counter: RowCounter,
}

impl<'a> CountingWriter<'a> {
    pub fn new(inner: &'a mut dyn Write) -> Self {
        CountingWriter {
            inner,
            counter: RowCounter::new(),
        }
    }

    /// The counts, once the whole archive went through.
    pub fn finish(self) -> Result<Vec<TableRows>, CountError> {
        self.counter.finish()
    }
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.counter.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The streaming parser. Feed it every byte of the archive in order, then
/// call [`RowCounter::finish`].
#[derive(Debug)]
pub struct RowCounter {
    pos: u64,
    need: Need,
    step: Step,
    buf: Vec<u8>,
    error: Option<CountError>,
    minor: u8,
    int_size: usize,
    off_size: usize,
    toc_left: i64,
    entry: Entry,
    /// (namespace, name) of every `TABLE` entry.
    tables: HashSet<(Vec<u8>, Vec<u8>)>,
    /// `TABLE DATA` entries by dump id.
    data: HashMap<i64, DataEntry>,
    /// Entries that have a data block, with a flag set once it was read.
    expected: HashMap<i64, (bool, String)>,
    encoding: Option<String>,
    /// Dump id of the table block being read, when it is one we count.
    block: Option<i64>,
    /// Newlines in the current table block so far.
    block_rows: u64,
    tail: Tail,
    /// Listing mode ([`RowCounter::listing`]): TOC entries read and not yet
    /// taken by [`RowCounter::take_toc`].
    toc: Option<Vec<TocEntry>>,
}

impl Default for RowCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowCounter {
    pub fn new() -> Self {
        RowCounter {
            pos: 0,
            need: Need::Bytes(5),
            step: Step::Magic,
            buf: Vec::new(),
            error: None,
            minor: 0,
            int_size: 0,
            off_size: 0,
            toc_left: 0,
            entry: Entry::default(),
            tables: HashSet::new(),
            data: HashMap::new(),
            expected: HashMap::new(),
            encoding: None,
            block: None,
            block_rows: 0,
            tail: Tail::default(),
            toc: None,
        }
    }

    /// A parser that also keeps every TOC entry, for `ccbackup ls`. It
    /// accepts archives with compressed data too: only the counts need
    /// uncompressed data, and a lister stops once [`Self::toc_read`].
    pub fn listing() -> Self {
        RowCounter {
            toc: Some(Vec::new()),
            ..Self::new()
        }
    }

    /// The TOC entries parsed since the last call. Taking them after every
    /// [`Self::feed`] keeps memory bounded by one fed chunk's worth.
    pub fn take_toc(&mut self) -> Vec<TocEntry> {
        self.toc.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Whether the whole table of contents has been read.
    pub fn toc_read(&self) -> bool {
        !matches!(self.step_name(), "the header" | "the table of contents")
    }

    /// The first problem found so far, if any.
    pub fn problem(&self) -> Option<&CountError> {
        self.error.as_ref()
    }

    /// Consumes the next bytes of the archive. Never fails: the first
    /// problem is remembered and reported by [`RowCounter::finish`].
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.error.is_none() {
            let used = self.lex(data);
            self.pos += used as u64;
            data = &data[used..];
        }
    }

    /// The row count of every table whose data the archive holds, sorted
    /// by schema then table (bytewise, as `count_rows` orders them).
    pub fn finish(mut self) -> Result<Vec<TableRows>, CountError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.step != Step::BlockType || !self.buf.is_empty() {
            return Err(CountError::Truncated {
                at: self.pos,
                what: self.step_name(),
            });
        }
        let mut missing: Vec<_> = self
            .expected
            .iter()
            .filter(|(_, (seen, _))| !seen)
            .map(|(id, (_, what))| (*id, what.clone()))
            .collect();
        missing.sort();
        if let Some((id, what)) = missing.into_iter().next() {
            return Err(CountError::MissingData { id, what });
        }
        let decode = name_decoder(self.encoding.as_deref())?;
        let mut out = Vec::with_capacity(self.data.len());
        for d in self.data.into_values() {
            // Data of a table without a TABLE entry is an extension's
            // configuration table, which count_rows leaves out too.
            if !self.tables.contains(&(d.schema.clone(), d.table.clone())) {
                continue;
            }
            out.push(TableRows {
                schema: decode(&d.schema)?,
                table: decode(&d.table)?,
                rows: i64::try_from(d.rows).unwrap_or(i64::MAX),
            });
        }
        out.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
        Ok(out)
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.error = Some(CountError::Malformed {
            at: self.pos,
            what: what.into(),
        });
    }

    fn step_name(&self) -> &'static str {
        match self.step {
            Step::Magic
            | Step::Version
            | Step::IntSize
            | Step::OffSize
            | Step::Format
            | Step::Compression
            | Step::Time(_)
            | Step::HeaderStr(_) => "the header",
            Step::TocCount | Step::Entry(_) => "the table of contents",
            Step::BlockType => "a data block header",
            Step::BlockId { .. } | Step::ChunkLen | Step::Chunk => "a table's data",
            Step::BlobOid | Step::BlobChunkLen | Step::BlobChunk => "large object data",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::toc::encoding_of;
    use super::*;

    /// Writes archive pieces the way pg_dump does (int size 4, offset 8).
    #[derive(Default)]
    struct Arch(Vec<u8>);

    impl Arch {
        fn int(&mut self, v: i64) -> &mut Self {
            self.0.push(u8::from(v < 0));
            self.0
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
            self
        }
        fn str(&mut self, s: Option<&str>) -> &mut Self {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.0.extend_from_slice(s.as_bytes());
                    self
                }
            }
        }
        fn header(minor: u8) -> Arch {
            let mut a = Arch::default();
            a.0.extend_from_slice(b"PGDMP");
            a.0.extend_from_slice(&[1, minor, 0, 4, 8, FORMAT_CUSTOM]);
            if minor >= 15 {
                a.0.push(0);
            } else {
                a.int(0);
            }
            for _ in 0..7 {
                a.int(1);
            }
            a.str(Some("db")).str(Some("15.2")).str(Some("15.2"));
            a
        }
        fn entry(
            &mut self,
            minor: u8,
            id: i64,
            data: bool,
            desc: &str,
            ns: &str,
            tag: &str,
        ) -> &mut Self {
            self.int(id).int(i64::from(data));
            self.str(Some("0"))
                .str(Some("0"))
                .str(Some(tag))
                .str(Some(desc));
            self.int(1);
            let defn = if desc == "ENCODING" {
                "SET client_encoding = 'UTF8';\n".to_owned()
            } else {
                "x".repeat(5000)
            };
            self.str(Some(&defn))
                .str(Some(""))
                .str(None)
                .str(Some(ns))
                .str(Some(""));
            if minor >= 14 {
                self.str(Some("heap"));
            }
            if minor >= 16 {
                self.int(i64::from(b'r'));
            }
            self.str(Some("postgres")).str(Some("false"));
            self.str(Some("1")).str(None);
            self.0.push(1);
            self.0.extend_from_slice(&[0; 8]);
            self
        }
        fn block(&mut self, id: i64, chunks: &[&[u8]]) -> &mut Self {
            self.0.push(BLK_DATA);
            self.int(id);
            for c in chunks {
                self.int(c.len() as i64);
                self.0.extend_from_slice(c);
            }
            self.int(0)
        }
    }

    fn sample(minor: u8) -> Vec<u8> {
        let mut a = Arch::header(minor);
        a.int(5);
        a.entry(minor, 1, false, "ENCODING", "", "ENCODING");
        a.entry(minor, 2, false, "TABLE", "s", "b");
        a.entry(minor, 3, false, "TABLE", "s", "a");
        a.entry(minor, 4, true, "TABLE DATA", "s", "b");
        a.entry(minor, 5, true, "TABLE DATA", "s", "a");
        a.block(4, &[b"1\tx\\ny\n2\t", b"z\n", b"3\t\\\\.\n", b"\\.\n\n\n"]);
        a.block(5, &[b"\n2\n\\", b".\n"]);
        a.0
    }

    fn counts(bytes: &[u8], piece: usize) -> Result<Vec<(String, i64)>, CountError> {
        let mut c = RowCounter::new();
        for p in bytes.chunks(piece) {
            c.feed(p);
        }
        c.finish()
            .map(|v| v.into_iter().map(|t| (t.table, t.rows)).collect())
    }

    #[test]
    fn counts_rows_whatever_the_write_sizes() {
        for minor in [14, 15, 16] {
            let a = sample(minor);
            for piece in [1, 2, 3, 7, 64, a.len()] {
                assert_eq!(
                    counts(&a, piece),
                    Ok(vec![("a".to_owned(), 2), ("b".to_owned(), 3)]),
                    "minor {minor}, pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn listing_keeps_every_toc_entry_with_its_owner() {
        let a = sample(16);
        let mut c = RowCounter::listing();
        let mut got = Vec::new();
        for p in a.chunks(3) {
            c.feed(p);
            got.extend(c.take_toc());
        }
        assert!(c.toc_read());
        let tags: Vec<_> = got
            .iter()
            .map(|e| (e.dump_id, String::from_utf8_lossy(&e.desc).into_owned()))
            .collect();
        assert_eq!(tags[1], (2, "TABLE".to_owned()));
        assert_eq!(got.len(), 5);
        assert_eq!(got[2].owner.as_deref(), Some(&b"postgres"[..]));
        assert_eq!(got[2].namespace.as_deref(), Some(&b"s"[..]));
        // The plain counter keeps nothing.
        let mut plain = RowCounter::new();
        plain.feed(&a);
        assert!(plain.take_toc().is_empty());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let a = sample(16);
        for cut in 0..a.len() {
            assert!(counts(&a[..cut], 4096).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn unknown_versions_and_compression_are_refused() {
        let mut a = sample(16);
        a[6] = 17;
        assert_eq!(counts(&a, 100), Err(CountError::Version(1, 17, 0)));
        let mut a = sample(16);
        a[11] = 1;
        assert_eq!(counts(&a, 100), Err(CountError::Compressed));
        assert_eq!(counts(b"PGDMQ", 100), Err(CountError::NotCustom));
    }

    #[test]
    fn a_row_without_its_newline_is_an_error() {
        let mut a = Arch::header(16);
        a.int(2);
        a.entry(16, 1, false, "TABLE", "s", "t");
        a.entry(16, 2, true, "TABLE DATA", "s", "t");
        a.block(2, &[b"1\n2"]);
        assert!(matches!(
            counts(&a.0, 10),
            Err(CountError::Malformed { .. })
        ));
    }

    #[test]
    fn encoding_is_read_from_the_definition() {
        assert_eq!(
            encoding_of(b"SET client_encoding = 'LATIN1';\n").as_deref(),
            Some("LATIN1")
        );
        let latin1 = name_decoder(Some("LATIN1")).unwrap();
        assert_eq!(latin1(&[0x64, 0xe9]).unwrap(), "dé");
    }
}
