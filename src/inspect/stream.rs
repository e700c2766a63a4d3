//! One artifact through the pipeline: the download (with its checksum)
//! runs on the async side and hands chunks over a bounded channel to a
//! blocking thread, which decrypts, decompresses and parses them and hands
//! items back over another bounded channel. The three run together, so at
//! most a few chunks and items wait anywhere.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use super::{pg, tree, Item, Listing, LsError, LsRequest};
use crate::repo::manifest::{Artifact, Manifest};
use crate::repo::store::Repo;
use crate::restore::extract::Selection;
use crate::restore::fetch;

/// Chunks in flight between the download and the parser.
const CHUNKS: usize = 8;
/// Items in flight between the parser and the printer.
const ITEMS: usize = 64;

/// What reads the decoded bytes.
pub(super) enum Reader {
    /// A tar stream: entries selected by the patterns, at most `cap`.
    Tree(Arc<Selection>, tree::Cap),
    /// A pg_dump archive's table of contents.
    Toc(pg::TableRows),
    /// pg_dumpall's globals.
    Globals,
}

/// Lists `art`; returns how many items were listed and whether all went
/// well. The checksum verdict wins over a parse error: a corrupt artifact
/// usually fails to parse too, and "corrupt" is the useful message.
pub(super) async fn list_artifact(
    repo: &Repo,
    m: &Manifest,
    art: &Artifact,
    req: &LsRequest,
    reader: Reader,
    out: &mut dyn Listing,
) -> (u64, Result<(), LsError>) {
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(CHUNKS);
    let (item_tx, mut item_rx) = mpsc::channel::<Item>(ITEMS);
    let blocking_art = art.clone();
    let ids = req.identities.clone();
    let parse = tokio::task::spawn_blocking(move || -> Result<(), LsError> {
        let raw = ChannelReader {
            rx: chunk_rx,
            current: Bytes::new(),
        };
        let decoded = crate::crypto::open_stream(raw, &blocking_art, ids.as_deref())?;
        let emit = |item: Item| item_tx.blocking_send(item).is_ok();
        match reader {
            Reader::Tree(select, cap) => tree::list(decoded, &blocking_art, &select, cap, emit),
            Reader::Toc(rows) => pg::list_toc(decoded, &blocking_art, &rows, emit),
            Reader::Globals => pg::list_globals(decoded, &blocking_art, emit),
        }
        // Dropping the reader here tells the download to stop handing on
        // chunks; it goes on hashing to the end.
    });
    let download = fetch::stream_checked(repo, &m.job, &m.id, art, &req.cancel, chunk_tx);
    let mut listed = 0u64;
    let show = async {
        while let Some(item) = item_rx.recv().await {
            listed += 1;
            out.item(art, item);
        }
    };
    let (fetched, ()) = tokio::join!(download, show);
    let parsed = parse.await.unwrap_or(Err(LsError::Join));
    let result = match (fetched, parsed) {
        (Err(e), _) => Err(e.into()),
        (Ok(()), r) => r,
    };
    (listed, result)
}

/// The stored bytes as a `Read`, for the blocking side.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                // The download ended (or failed: its verdict says so).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
