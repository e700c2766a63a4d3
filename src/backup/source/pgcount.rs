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
//! only the entry being read (names capped at [`MAX_KEPT`] bytes, every
//! other string skipped without buffering) and one map entry per table, so
//! its memory does not depend on the size of the dump.
//!
//! Anything unexpected (another archive version, compressed data, a
//! truncated or garbled stream) makes [`RowCounter::finish`] return an
//! error; the caller records no counts rather than wrong ones.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::repo::manifest::TableRows;

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

/// What the lexer is gathering.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// `n` raw bytes (header fields).
    Bytes(usize),
    /// One archive integer.
    Int,
    /// A string's length, then its body.
    StrLen {
        keep: bool,
    },
    StrBody {
        left: u64,
    },
    StrSkip {
        left: u64,
    },
    /// A data chunk of a table block (rows are counted) or of a large
    /// object block (skipped).
    Copy {
        left: u64,
    },
    Skip {
        left: u64,
    },
}

/// A string from the TOC, as far as we kept it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Text {
    #[default]
    Null,
    Kept(Vec<u8>),
    /// Longer than [`MAX_KEPT`], or not wanted.
    Dropped,
}

impl Text {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Text::Kept(b) => Some(b),
            _ => None,
        }
    }
}

/// A completed token handed to the grammar.
enum Token {
    Bytes(Vec<u8>),
    Int(i64),
    Str(Text),
    /// The end of a chunk or skipped run.
    Done,
}

/// Where in the archive the grammar is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Magic,
    Version,
    IntSize,
    OffSize,
    Format,
    Compression,
    /// Creation time: seven integers.
    Time(u8),
    /// Database name, server version, pg_dump version.
    HeaderStr(u8),
    TocCount,
    Entry(Field),
    BlockType,
    BlockId {
        blobs: bool,
    },
    ChunkLen,
    Chunk,
    BlobOid,
    BlobChunkLen,
    BlobChunk,
}

/// The fields of one TOC entry, in archive order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DumpId,
    HadDumper,
    TableOid,
    Oid,
    Tag,
    Desc,
    Section,
    Defn,
    DropStmt,
    CopyStmt,
    Namespace,
    Tablespace,
    TableAm,
    Relkind,
    Owner,
    WithOids,
    Dep,
    /// Custom format's data position: a flag byte and `off_size` bytes.
    DataPos,
}

#[derive(Debug, Default)]
struct Entry {
    dump_id: i64,
    had_dumper: bool,
    tag: Text,
    desc: Text,
    defn: Text,
    namespace: Text,
}

#[derive(Debug)]
struct DataEntry {
    schema: Vec<u8>,
    table: Vec<u8>,
    rows: u64,
}

/// The end of the table block being read, to find pg_dump's end marker.
/// pg_dump ends every table's COPY text with `\.` and two empty lines;
/// those are not rows.
#[derive(Debug, Default)]
struct Tail {
    /// The block's last bytes, at most [`TAIL`].
    bytes: Vec<u8>,
    /// Bytes in the block so far.
    len: u64,
}

/// How much of a block's end is kept to recognise the end marker.
const TAIL: usize = 64;

impl Tail {
    fn extend(&mut self, chunk: &[u8]) {
        self.len += chunk.len() as u64;
        if chunk.len() >= TAIL {
            self.bytes.clear();
            self.bytes.extend_from_slice(&chunk[chunk.len() - TAIL..]);
        } else {
            let keep = TAIL - chunk.len();
            if self.bytes.len() > keep {
                self.bytes.drain(..self.bytes.len() - keep);
            }
            self.bytes.extend_from_slice(chunk);
        }
    }

    /// How many of the block's newlines belong to the end marker and the
    /// empty lines after it (0 without a marker), or why the end of the
    /// block cannot be read.
    fn marker_newlines(&self) -> Result<u64, &'static str> {
        let b = &self.bytes;
        if b.is_empty() {
            return Ok(0);
        }
        if b.last() != Some(&b'\n') {
            return Err("the table data ends inside a row");
        }
        let whole = self.len == b.len() as u64;
        let trailing = b.iter().rev().take_while(|&&c| c == b'\n').count();
        if trailing == b.len() && !whole {
            return Err("the table data ends in more empty lines than ccbackup can tell apart");
        }
        let before = &b[..b.len() - trailing];
        let at_line_start = match before.len() {
            2 => whole,
            n if n > 2 => before[n - 3] == b'\n',
            _ => false,
        };
        Ok(if before.ends_with(b"\\.") && at_line_start {
            trailing as u64
        } else {
            0
        })
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
    tail: Tail,
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
            tail: Tail::default(),
        }
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

    /// Takes what the current `Need` wants from `data`; returns how many
    /// bytes it used.
    fn lex(&mut self, data: &[u8]) -> usize {
        match self.need {
            Need::Bytes(n) => self.gather(data, n),
            Need::Int => {
                let n = 1 + self.int_size;
                let used = self.gather_raw(data, n);
                if self.buf.len() == n {
                    let v = self.take_int();
                    if let Some(v) = v {
                        self.token(Token::Int(v));
                    }
                }
                used
            }
            Need::StrLen { keep } => {
                let n = 1 + self.int_size;
                let used = self.gather_raw(data, n);
                if self.buf.len() == n {
                    match self.take_int() {
                        None => {}
                        Some(l) if l < 0 => self.token(Token::Str(Text::Null)),
                        Some(0) => self.token(Token::Str(Text::Kept(Vec::new()))),
                        Some(l) => {
                            let left = l as u64;
                            self.need = if keep && left <= MAX_KEPT as u64 {
                                Need::StrBody { left }
                            } else {
                                Need::StrSkip { left }
                            };
                        }
                    }
                }
                used
            }
            Need::StrBody { left } => {
                let n = (left as usize).min(data.len());
                self.buf.extend_from_slice(&data[..n]);
                if n as u64 == left {
                    let s = std::mem::take(&mut self.buf);
                    self.token(Token::Str(Text::Kept(s)));
                } else {
                    self.need = Need::StrBody {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::StrSkip { left } => {
                let n = skip_len(left, data.len());
                if n as u64 == left {
                    self.token(Token::Str(Text::Dropped));
                } else {
                    self.need = Need::StrSkip {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::Copy { left } => {
                let n = skip_len(left, data.len());
                self.count_rows(&data[..n]);
                if n as u64 == left {
                    self.token(Token::Done);
                } else {
                    self.need = Need::Copy {
                        left: left - n as u64,
                    };
                }
                n
            }
            Need::Skip { left } => {
                let n = skip_len(left, data.len());
                if n as u64 == left {
                    self.token(Token::Done);
                } else {
                    self.need = Need::Skip {
                        left: left - n as u64,
                    };
                }
                n
            }
        }
    }

    fn gather_raw(&mut self, data: &[u8], n: usize) -> usize {
        let k = (n - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..k]);
        k
    }

    fn gather(&mut self, data: &[u8], n: usize) -> usize {
        let used = self.gather_raw(data, n);
        if self.buf.len() == n {
            let b = std::mem::take(&mut self.buf);
            self.token(Token::Bytes(b));
        }
        used
    }

    /// Decodes the integer in `buf` (sign byte, then little-endian bytes).
    fn take_int(&mut self) -> Option<i64> {
        // Decoded in place and cleared, not taken: one integer precedes
        // every chunk, and chunks are often single rows.
        let mut v: u64 = 0;
        for (i, &byte) in self.buf[1..].iter().enumerate() {
            v |= u64::from(byte) << (8 * i);
        }
        let negative = self.buf[0] != 0;
        self.buf.clear();
        match i64::try_from(v) {
            Ok(v) if !negative => Some(v),
            Ok(v) => Some(-v),
            Err(_) => {
                self.fail("integer out of range");
                None
            }
        }
    }

    fn count_rows(&mut self, chunk: &[u8]) {
        let Some(id) = self.block else { return };
        // Counting this way vectorises; COPY text escapes newlines inside
        // values, so every newline ends a row.
        let newlines = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        self.tail.extend(chunk);
        if let Some(d) = self.data.get_mut(&id) {
            d.rows += newlines;
        }
    }

    /// Ends a table block: the end marker and what follows it are not rows.
    fn end_table_block(&mut self) {
        let tail = std::mem::take(&mut self.tail);
        let Some(id) = self.block.take() else { return };
        match tail.marker_newlines() {
            Ok(n) => {
                if let Some(d) = self.data.get_mut(&id) {
                    d.rows = d.rows.saturating_sub(n);
                }
            }
            Err(why) => self.fail(format!("dump id {id}: {why}")),
        }
    }

    fn token(&mut self, t: Token) {
        self.need = Need::Int;
        match self.step {
            Step::Magic => match t {
                Token::Bytes(b) if b == b"PGDMP" => self.expect_bytes(Step::Version, 3),
                _ => self.error = Some(CountError::NotCustom),
            },
            Step::Version => {
                if let Token::Bytes(b) = t {
                    if b[0] != 1 || !(MIN_MINOR..=MAX_MINOR).contains(&b[1]) {
                        self.error = Some(CountError::Version(b[0], b[1], b[2]));
                        return;
                    }
                    self.minor = b[1];
                }
                self.expect_bytes(Step::IntSize, 1);
            }
            Step::IntSize => {
                if let Token::Bytes(b) = t {
                    self.int_size = usize::from(b[0]);
                }
                self.expect_bytes(Step::OffSize, 1);
            }
            Step::OffSize => {
                if let Token::Bytes(b) = t {
                    self.off_size = usize::from(b[0]);
                }
                if !(1..=8).contains(&self.int_size) || !(1..=16).contains(&self.off_size) {
                    self.error = Some(CountError::Sizes(self.int_size as u8, self.off_size as u8));
                    return;
                }
                self.expect_bytes(Step::Format, 1);
            }
            Step::Format => {
                if !matches!(t, Token::Bytes(ref b) if b[0] == FORMAT_CUSTOM) {
                    self.error = Some(CountError::NotCustom);
                    return;
                }
                // 1.15 made the compression an algorithm byte; before it
                // was an integer level.
                self.step = Step::Compression;
                if self.minor >= 15 {
                    self.need = Need::Bytes(1);
                }
            }
            Step::Compression => {
                let none = match t {
                    Token::Bytes(b) => b[0] == 0,
                    Token::Int(level) => level == 0,
                    _ => false,
                };
                if !none {
                    self.error = Some(CountError::Compressed);
                    return;
                }
                self.step = Step::Time(7);
            }
            Step::Time(n) => {
                if n > 1 {
                    self.step = Step::Time(n - 1);
                } else {
                    self.expect_str(Step::HeaderStr(3), false);
                }
            }
            Step::HeaderStr(n) => {
                if n > 1 {
                    self.expect_str(Step::HeaderStr(n - 1), false);
                } else {
                    self.step = Step::TocCount;
                }
            }
            Step::TocCount => {
                let Token::Int(n) = t else { return };
                if n < 0 {
                    self.fail("negative TOC entry count");
                    return;
                }
                self.toc_left = n;
                self.next_entry();
            }
            Step::Entry(f) => self.entry_field(f, t),
            Step::BlockType => {
                let Token::Bytes(b) = t else { return };
                match b[0] {
                    BLK_DATA => self.step = Step::BlockId { blobs: false },
                    BLK_BLOBS => self.step = Step::BlockId { blobs: true },
                    other => self.fail(format!("unknown data block type {other}")),
                }
            }
            Step::BlockId { blobs } => {
                let Token::Int(id) = t else { return };
                match self.expected.get_mut(&id) {
                    Some((seen, _)) if !*seen => *seen = true,
                    Some(_) => {
                        self.fail(format!("second data block for dump id {id}"));
                        return;
                    }
                    None => {
                        self.fail(format!("data block for dump id {id}, which has no data"));
                        return;
                    }
                }
                if blobs {
                    self.step = Step::BlobOid;
                } else {
                    self.block = self.data.contains_key(&id).then_some(id);
                    self.tail = Tail::default();
                    self.step = Step::ChunkLen;
                }
            }
            Step::ChunkLen => {
                let Token::Int(len) = t else { return };
                match len {
                    0 => {
                        self.end_table_block();
                        self.expect_bytes(Step::BlockType, 1);
                    }
                    l if l < 0 => self.fail("negative chunk length"),
                    l => {
                        self.step = Step::Chunk;
                        self.need = Need::Copy { left: l as u64 };
                    }
                }
            }
            Step::Chunk => self.step = Step::ChunkLen,
            Step::BlobOid => {
                let Token::Int(oid) = t else { return };
                if oid == 0 {
                    self.expect_bytes(Step::BlockType, 1);
                } else {
                    self.step = Step::BlobChunkLen;
                }
            }
            Step::BlobChunkLen => {
                let Token::Int(len) = t else { return };
                match len {
                    0 => self.step = Step::BlobOid,
                    l if l < 0 => self.fail("negative large object chunk length"),
                    l => {
                        self.step = Step::BlobChunk;
                        self.need = Need::Skip { left: l as u64 };
                    }
                }
            }
            Step::BlobChunk => self.step = Step::BlobChunkLen,
        }
    }

    fn expect_bytes(&mut self, step: Step, n: usize) {
        self.step = step;
        self.need = Need::Bytes(n);
    }

    fn expect_str(&mut self, step: Step, keep: bool) {
        self.step = step;
        self.need = Need::StrLen { keep };
    }

    fn next_entry(&mut self) {
        if self.toc_left == 0 {
            self.expect_bytes(Step::BlockType, 1);
        } else {
            self.toc_left -= 1;
            self.entry = Entry::default();
            self.step = Step::Entry(Field::DumpId);
        }
    }

    fn entry_field(&mut self, f: Field, t: Token) {
        let text = |t: Token| match t {
            Token::Str(s) => s,
            _ => Text::Dropped,
        };
        let int = |t: &Token| match t {
            Token::Int(v) => *v,
            _ => 0,
        };
        let next = match f {
            Field::DumpId => {
                self.entry.dump_id = int(&t);
                Field::HadDumper
            }
            Field::HadDumper => {
                self.entry.had_dumper = int(&t) != 0;
                Field::TableOid
            }
            Field::TableOid => Field::Oid,
            Field::Oid => Field::Tag,
            Field::Tag => {
                self.entry.tag = text(t);
                Field::Desc
            }
            Field::Desc => {
                self.entry.desc = text(t);
                Field::Section
            }
            Field::Section => Field::Defn,
            Field::Defn => {
                self.entry.defn = text(t);
                Field::DropStmt
            }
            Field::DropStmt => Field::CopyStmt,
            Field::CopyStmt => Field::Namespace,
            Field::Namespace => {
                self.entry.namespace = text(t);
                Field::Tablespace
            }
            Field::Tablespace if self.minor >= 14 => Field::TableAm,
            Field::Tablespace => Field::Owner,
            Field::TableAm if self.minor >= 16 => Field::Relkind,
            Field::TableAm | Field::Relkind => Field::Owner,
            Field::Owner => Field::WithOids,
            Field::WithOids => Field::Dep,
            Field::Dep => match t {
                Token::Str(Text::Null) => Field::DataPos,
                _ => Field::Dep,
            },
            Field::DataPos => {
                self.finish_entry();
                if self.error.is_none() {
                    self.next_entry();
                }
                return;
            }
        };
        self.step = Step::Entry(next);
        self.need = match next {
            Field::DumpId | Field::HadDumper | Field::Section | Field::Relkind => Need::Int,
            Field::DataPos => Need::Bytes(1 + self.off_size),
            Field::Tag | Field::Desc | Field::Namespace => Need::StrLen { keep: true },
            // The ENCODING entry's definition names the encoding of every
            // string in the archive.
            Field::Defn => Need::StrLen {
                keep: self.entry.desc.bytes() == Some(b"ENCODING"),
            },
            _ => Need::StrLen { keep: false },
        };
    }

    fn finish_entry(&mut self) {
        let e = std::mem::take(&mut self.entry);
        let desc = e.desc.bytes().unwrap_or_default();
        let named = || match (e.namespace.bytes(), e.tag.bytes()) {
            (Some(ns), Some(tag)) => Some((ns.to_vec(), tag.to_vec())),
            _ => None,
        };
        match desc {
            b"TABLE" => match named() {
                Some(key) => {
                    self.tables.insert(key);
                }
                None => self.fail(format!("TABLE entry {} without a usable name", e.dump_id)),
            },
            b"TABLE DATA" => match named() {
                Some((schema, table)) => {
                    self.data.insert(
                        e.dump_id,
                        DataEntry {
                            schema,
                            table,
                            rows: 0,
                        },
                    );
                }
                None => self.fail(format!(
                    "TABLE DATA entry {} without a usable name",
                    e.dump_id
                )),
            },
            b"ENCODING" => self.encoding = e.defn.bytes().and_then(encoding_of),
            _ => {}
        }
        if e.had_dumper {
            let what = String::from_utf8_lossy(desc).into_owned();
            let what = match e.tag.bytes() {
                Some(tag) => format!("{what} {}", String::from_utf8_lossy(tag)),
                None => what,
            };
            self.expected.insert(e.dump_id, (false, what));
        }
    }
}

fn skip_len(left: u64, avail: usize) -> usize {
    usize::try_from(left).map_or(avail, |l| l.min(avail))
}

/// `SET client_encoding = 'UTF8';` -> `UTF8`.
fn encoding_of(defn: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(defn).ok()?;
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(s[start..start + len].to_owned())
}

type Decoder = fn(&[u8]) -> Result<String, CountError>;

/// How names in the archive become the UTF-8 strings the server reports
/// them as through a UTF-8 connection.
fn name_decoder(encoding: Option<&str>) -> Result<Decoder, CountError> {
    fn utf8(b: &[u8]) -> Result<String, CountError> {
        String::from_utf8(b.to_vec()).map_err(|_| CountError::Encoding("UTF8".to_owned()))
    }
    fn latin1(b: &[u8]) -> Result<String, CountError> {
        Ok(b.iter().map(|&c| char::from(c)).collect())
    }
    fn ascii(b: &[u8]) -> Result<String, CountError> {
        if b.is_ascii() {
            utf8(b)
        } else {
            Err(CountError::Encoding("other than UTF8 or LATIN1".to_owned()))
        }
    }
    Ok(match encoding.map(str::to_ascii_uppercase).as_deref() {
        None | Some("UTF8") => utf8,
        Some("LATIN1") => latin1,
        Some(_) => ascii,
    })
}

#[cfg(test)]
mod tests {
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
