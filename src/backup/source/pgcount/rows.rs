//! Counting COPY rows in a table's data and recognising pg_dump's end
//! marker.

use super::*;

/// The end of the table block being read, to find pg_dump's end marker.
/// pg_dump ends every table's COPY text with `\.` and two empty lines;
/// those are not rows.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// The block's last bytes, at most [`TAIL`].
    pub(super) bytes: Vec<u8>,
    /// Bytes in the block so far.
    pub(super) len: u64,
}

/// How much of a block's end is kept to recognise the end marker.
pub(super) const TAIL: usize = 64;

impl Tail {
    pub(super) fn extend(&mut self, chunk: &[u8]) {
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
    pub(super) fn marker_newlines(&self) -> Result<u64, &'static str> {
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

impl RowCounter {
    pub(super) fn count_rows(&mut self, chunk: &[u8]) {
        if self.block.is_none() {
            return;
        }
        // COPY text escapes newlines inside values, so every newline ends
        // a row.
        let newlines = count_newlines(chunk);
        self.tail.extend(chunk);
        // Summed here and added to the table at the block's end: a map
        // lookup per chunk (often per row) costs more than the counting.
        self.block_rows += newlines;
    }

    /// Ends a table block: the end marker and what follows it are not rows.
    pub(super) fn end_table_block(&mut self) {
        let tail = std::mem::take(&mut self.tail);
        let rows = std::mem::take(&mut self.block_rows);
        let Some(id) = self.block.take() else { return };
        match tail.marker_newlines() {
            Ok(n) => {
                if let Some(d) = self.data.get_mut(&id) {
                    d.rows += rows.saturating_sub(n);
                }
            }
            Err(why) => self.fail(format!("dump id {id}: {why}")),
        }
    }
}

/// Newlines in `bytes`. Summing 64 bytes at a time into a `u8` lets the
/// compiler compare 16 bytes per instruction; a plain `filter().count()`
/// widens every byte to a `u64` lane and runs several times slower, which
/// on the thread that reads pg_dump's output is time the backup waits for.
pub(super) fn count_newlines(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(64);
    let mut total = 0u64;
    for c in &mut chunks {
        let mut n = 0u8;
        for &b in c {
            n += u8::from(b == b'\n');
        }
        total += u64::from(n);
    }
    total + chunks.remainder().iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::count_newlines;

    #[test]
    fn counts_newlines_at_every_length_and_offset() {
        let text: Vec<u8> = (0..1000u32)
            .map(|i| {
                if i % 7 == 0 || i % 64 == 63 {
                    b'\n'
                } else {
                    b'a'
                }
            })
            .collect();
        for start in [0, 1, 63, 64, 65] {
            for end in [start, start + 1, start + 64, start + 200, 1000] {
                let s = &text[start..end];
                let want = s.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(count_newlines(s), want, "{start}..{end}");
            }
        }
        assert_eq!(count_newlines(&[b'\n'; 64]), 64);
        assert_eq!(count_newlines(&[b'\n'; 129]), 129);
    }
}
