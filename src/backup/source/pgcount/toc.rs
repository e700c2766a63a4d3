//! The archive's grammar: header, table of contents and data block headers,
//! and the table names the counts are reported under.

use super::lex::Token;
use super::*;

/// Where in the archive the grammar is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
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
pub(super) enum Field {
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
pub(super) struct Entry {
    pub(super) dump_id: i64,
    pub(super) had_dumper: bool,
    pub(super) tag: Text,
    pub(super) desc: Text,
    pub(super) defn: Text,
    pub(super) namespace: Text,
    pub(super) owner: Text,
}

#[derive(Debug)]
pub(super) struct DataEntry {
    pub(super) schema: Vec<u8>,
    pub(super) table: Vec<u8>,
    pub(super) rows: u64,
}

impl RowCounter {
    pub(super) fn token(&mut self, t: Token) {
        self.need = Need::Int;
        match self.step {
            Step::Magic
            | Step::Version
            | Step::IntSize
            | Step::OffSize
            | Step::Format
            | Step::Compression
            | Step::Time(_)
            | Step::HeaderStr(_) => self.header_token(t),
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
            Step::BlockId { blobs } => self.block_id(blobs, t),
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

    /// The archive header's fields, before the table of contents.
    fn header_token(&mut self, t: Token) {
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
                if !none && self.toc.is_none() {
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
            // `token` passes only the header's steps here.
            _ => {}
        }
    }

    /// The dump ID that opens a data block: a table's rows or large
    /// objects follow.
    fn block_id(&mut self, blobs: bool, t: Token) {
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
            self.block_rows = 0;
            self.tail = Tail::default();
            self.step = Step::ChunkLen;
        }
    }

    pub(super) fn expect_bytes(&mut self, step: Step, n: usize) {
        self.step = step;
        self.need = Need::Bytes(n);
    }

    pub(super) fn expect_str(&mut self, step: Step, keep: bool) {
        self.step = step;
        self.need = Need::StrLen { keep };
    }

    pub(super) fn next_entry(&mut self) {
        if self.toc_left == 0 {
            self.expect_bytes(Step::BlockType, 1);
        } else {
            self.toc_left -= 1;
            self.entry = Entry::default();
            self.step = Step::Entry(Field::DumpId);
        }
    }

    pub(super) fn entry_field(&mut self, f: Field, t: Token) {
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
            Field::Owner => {
                self.entry.owner = text(t);
                Field::WithOids
            }
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
            Field::Owner => Need::StrLen {
                keep: self.toc.is_some(),
            },
            // The ENCODING entry's definition names the encoding of every
            // string in the archive.
            Field::Defn => Need::StrLen {
                keep: self.entry.desc.bytes() == Some(b"ENCODING"),
            },
            _ => Need::StrLen { keep: false },
        };
    }

    pub(super) fn finish_entry(&mut self) {
        let e = std::mem::take(&mut self.entry);
        if let Some(list) = &mut self.toc {
            list.push(TocEntry {
                dump_id: e.dump_id,
                desc: e.desc.bytes().unwrap_or_default().to_vec(),
                namespace: e.namespace.bytes().map(<[u8]>::to_vec),
                tag: e.tag.bytes().map(<[u8]>::to_vec),
                owner: e.owner.bytes().map(<[u8]>::to_vec),
            });
        }
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

/// `SET client_encoding = 'UTF8';` -> `UTF8`.
pub(super) fn encoding_of(defn: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(defn).ok()?;
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(s[start..start + len].to_owned())
}

pub(super) type Decoder = fn(&[u8]) -> Result<String, CountError>;

/// How names in the archive become the UTF-8 strings the server reports
/// them as through a UTF-8 connection.
pub(super) fn name_decoder(encoding: Option<&str>) -> Result<Decoder, CountError> {
    pub(super) fn utf8(b: &[u8]) -> Result<String, CountError> {
        String::from_utf8(b.to_vec()).map_err(|_| CountError::Encoding("UTF8".to_owned()))
    }
    pub(super) fn latin1(b: &[u8]) -> Result<String, CountError> {
        Ok(b.iter().map(|&c| char::from(c)).collect())
    }
    pub(super) fn ascii(b: &[u8]) -> Result<String, CountError> {
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
