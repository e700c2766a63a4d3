//! A pass-through reader that watches the tar headers going by and refuses
//! metadata entries (GNU long names and link names, pax headers) larger
//! than [`MAX_META`]. The tar crate reads such entries whole into memory,
//! so a tiny crafted artifact (a 512 MiB long name compresses to a few KiB)
//! would otherwise decide how much memory a restore takes. ccbackup's own
//! archives never come near the limit: a path is at most a few KiB.

use std::io::{self, Read};

/// Largest GNU long name/link or pax header accepted.
pub const MAX_META: u64 = 64 * 1024;
/// Most extension blocks of a GNU sparse map accepted (21 extents each).
/// ccbackup never writes sparse entries; the tar reader keeps about 1 KiB
/// of memory per block, so a crafted map of millions would decide how much
/// memory a restore takes.
pub const MAX_SPARSE_EXTENSIONS: u32 = 16;
const BLOCK: usize = 512;

pub struct TarCap<R> {
    inner: R,
    header: Vec<u8>,
    /// Bytes of the current entry's data (padded to blocks) still to pass.
    data_left: u64,
    /// The current entry is a pax header whose records are collected.
    pax: Option<Vec<u8>>,
    /// A pax `size` record that overrides the next entry's header size.
    next_size: Option<u64>,
    /// Inside a GNU sparse map: extension blocks seen so far, and the
    /// entry's data (padded) that follows the last one.
    sparse: Option<(u32, u64)>,
}

impl<R> TarCap<R> {
    pub fn new(inner: R) -> Self {
        TarCap {
            inner,
            header: Vec::with_capacity(BLOCK),
            data_left: 0,
            pax: None,
            next_size: None,
            sparse: None,
        }
    }
}

fn refuse(what: String) -> io::Error {
    io::Error::other(what)
}

/// The size field of a ustar/GNU header: octal text, or base-256.
fn header_size(h: &[u8]) -> io::Result<u64> {
    let f = &h[124..136];
    if f[0] & 0x80 != 0 {
        let mut v: u64 = 0;
        for &b in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|x| x.checked_add(u64::from(b)))
                .ok_or_else(|| refuse("tar header size overflows".into()))?;
        }
        return Ok(v);
    }
    let text: String = f
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let t = text.trim();
    if t.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(t, 8).map_err(|_| refuse(format!("tar header size {t:?} is not a number")))
}

/// The `size` record of pax data (`"<len> size=<n>\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|rec| {
        let (_, kv) = rec.split_once(' ')?;
        kv.strip_prefix("size=")?.trim().parse().ok()
    })
}

impl<R> TarCap<R> {
    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.data_left > 0 {
                let n = (self.data_left.min(bytes.len() as u64)) as usize;
                if let Some(p) = &mut self.pax {
                    p.extend_from_slice(&bytes[..n]);
                }
                self.data_left -= n as u64;
                bytes = &bytes[n..];
                if self.data_left == 0 {
                    if let Some(p) = self.pax.take() {
                        self.next_size = pax_size(&p);
                    }
                }
                continue;
            }
            let n = (BLOCK - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < BLOCK {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            if let Some((seen, data)) = self.sparse {
                let seen = seen + 1;
                if seen > MAX_SPARSE_EXTENSIONS {
                    return Err(refuse(format!(
                        "archive has a sparse entry with more than {MAX_SPARSE_EXTENSIONS} map \
                         extension blocks; ccbackup never writes sparse entries"
                    )));
                }
                // Byte 504 of an extension block: another one follows.
                if h[504] != 0 {
                    self.sparse = Some((seen, data));
                } else {
                    self.sparse = None;
                    self.data_left = data;
                }
                continue;
            }
            if h.iter().all(|&b| b == 0) {
                continue;
            }
            let kind = h[156];
            let mut size = header_size(&h)?;
            let meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
            if meta && size > MAX_META {
                return Err(refuse(format!(
                    "archive has a {} byte {} entry; more than {MAX_META} bytes is never a real name or header",
                    size,
                    match kind {
                        b'L' => "long-name",
                        b'K' => "long-link",
                        _ => "pax header",
                    }
                )));
            }
            if !meta {
                if let Some(s) = self.next_size.take() {
                    size = s;
                }
            }
            // Directories, links and the like carry no data.
            if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
                size = 0;
            }
            self.pax = (kind == b'x').then(Vec::new);
            self.data_left = size.div_ceil(BLOCK as u64) * BLOCK as u64;
            // GNU sparse: byte 482 says extension blocks come before the data.
            if kind == b'S' && h[482] != 0 {
                self.sparse = Some((0, self.data_left));
                self.data_left = 0;
            }
            if self.data_left == 0 {
                if let Some(p) = self.pax.take() {
                    self.next_size = pax_size(&p);
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(long: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let name = format!("d/{}", "n".repeat(long));
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, &name, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "short", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn drain(data: &[u8]) -> io::Result<Vec<String>> {
        let mut ar = tar::Archive::new(TarCap::new(data));
        let mut names = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            names.push(e.path()?.display().to_string());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(names)
    }

    #[test]
    fn real_archives_pass_through_untouched() {
        let data = archive(300);
        let names = drain(&data).unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(names[1], "short");
    }

    #[test]
    fn huge_long_names_are_refused() {
        let data = archive(200_000);
        let err = drain(&data).unwrap_err().to_string();
        assert!(err.contains("long-name"), "{err}");
    }

    /// A GNU sparse entry whose map has `ext` extension blocks of empty
    /// extents, then a plain file.
    pub(crate) fn sparse_bomb(ext: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let octal = |v: u64| -> [u8; 12] {
            let mut f = [0u8; 12];
            f[..11].copy_from_slice(format!("{v:011o}").as_bytes());
            f
        };
        let extents = 4 + 21 * ext as u64;
        let mut h = tar::Header::new_gnu();
        h.set_path("sparse").unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.set_mode(0o644);
        {
            let g = h.as_gnu_mut().unwrap();
            for (i, e) in g.sparse.iter_mut().enumerate() {
                e.offset = octal(i as u64 + 1);
                e.numbytes = octal(0);
            }
            g.isextended[0] = u8::from(ext > 0);
            g.realsize = octal(extents);
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        for b in 0..ext {
            let mut block = [0u8; 512];
            for i in 0..21u64 {
                let at = (i * 24) as usize;
                let off = 5 + b as u64 * 21 + i;
                block[at..at + 12].copy_from_slice(&octal(off));
                block[at + 12..at + 24].copy_from_slice(&octal(0));
            }
            block[504] = u8::from(b + 1 < ext);
            out.extend_from_slice(&block);
        }
        let mut b = tar::Builder::new(out);
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "after", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn regression_issue22_sparse_maps_are_bounded_and_the_walk_stays_in_step() {
        let small = sparse_bomb(2);
        assert_eq!(drain(&small).unwrap(), ["sparse", "after"]);
        let big = sparse_bomb(MAX_SPARSE_EXTENSIONS as usize + 1);
        let err = drain(&big).unwrap_err().to_string();
        assert!(err.contains("sparse"), "{err}");
    }

    #[test]
    fn pax_size_records_keep_the_walk_in_step() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_pax_extensions([("size", &b"2000"[..])]).unwrap();
        b.append_data(&mut h, "big", &vec![7u8; 2000][..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "after", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert_eq!(drain(&data).unwrap(), ["big", "after"]);
    }
}
