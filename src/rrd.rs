//! The RRD file format as librrd writes it on LP64 Linux: header checks that
//! the backup runs on every copy it takes and restore and verify run on
//! every file they bring back.

/// Header facts of a file that passed [`validate_rrd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrdInfo {
    pub version: u8,
    pub ds_count: u64,
    pub rra_count: u64,
    pub expected_size: u64,
}

/// Why bytes are not a complete RRD file of this architecture.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RrdInvalid {
    #[error("too short for its header: {len} bytes, header needs {needed}")]
    TooShort { len: u64, needed: u64 },
    #[error("no RRD magic at the start")]
    BadMagic,
    #[error("unsupported format version {found:?}")]
    BadVersion { found: String },
    #[error("float cookie mismatch: written on another architecture")]
    ForeignArchitecture,
    #[error("implausible header: {ds_count} data sources, {rra_count} archives")]
    BadCounts { ds_count: u64, rra_count: u64 },
    #[error("size is {actual} bytes but the header implies {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
}

// Layout of librrd's on-disk structs on LP64 (rrd_format.h): the file is the
// in-memory structs written one after another.
const MAGIC: &[u8; 4] = b"RRD\0";
const FLOAT_COOKIE: f64 = 8.642135E130;
const STAT_HEAD: u64 = 128;
const DS_DEF: u64 = 120;
const RRA_DEF: u64 = 120;
const RRA_DEF_ROW_CNT: u64 = 24;
/// `live_head_t` is `{ time_t last_up; long last_up_usec; }` from version 3
/// on; versions 1 and 2 stored only the `time_t` (librrd's rrd_open reads
/// them that way), so their header is 8 bytes shorter.
const LIVE_HEAD_V3: u64 = 16;
const LIVE_HEAD_V1: u64 = 8;
const PDP_PREP: u64 = 112;
const CDP_PREP: u64 = 80;
const RRA_PTR: u64 = 8;
const VALUE: u64 = 8;

fn u64_at(bytes: &[u8], off: u64) -> Option<u64> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(8)?;
    let raw: [u8; 8] = bytes.get(start..end)?.try_into().ok()?;
    Some(u64::from_ne_bytes(raw))
}

/// Checks that `bytes` are a whole RRD file as librrd on this machine would
/// read it: magic, version 0001-0005, the float cookie, and the exact size
/// implied by the header. Pure; every offset is bounds- and
/// overflow-checked, so arbitrary input is safe.
pub fn validate_rrd(bytes: &[u8]) -> Result<RrdInfo, RrdInvalid> {
    let len = bytes.len() as u64;
    if len < STAT_HEAD {
        // Magic first, so a short non-RRD says what it is.
        if bytes.len() >= 4 && &bytes[..4] != MAGIC {
            return Err(RrdInvalid::BadMagic);
        }
        return Err(RrdInvalid::TooShort {
            len,
            needed: STAT_HEAD,
        });
    }
    if &bytes[..4] != MAGIC {
        return Err(RrdInvalid::BadMagic);
    }
    let version = match &bytes[4..8] {
        b"0001" => 1,
        b"0002" => 2,
        b"0003" => 3,
        b"0004" => 4,
        b"0005" => 5,
        other => {
            return Err(RrdInvalid::BadVersion {
                found: other.escape_ascii().to_string(),
            })
        }
    };
    let mut cookie = [0u8; 8];
    cookie.copy_from_slice(&bytes[16..24]);
    if f64::from_ne_bytes(cookie) != FLOAT_COOKIE {
        return Err(RrdInvalid::ForeignArchitecture);
    }
    let too_short = |needed| RrdInvalid::TooShort { len, needed };
    let ds = u64_at(bytes, 24).ok_or(too_short(32))?;
    let rra = u64_at(bytes, 32).ok_or(too_short(40))?;
    let bad_counts = RrdInvalid::BadCounts {
        ds_count: ds,
        rra_count: rra,
    };
    if ds == 0 || rra == 0 {
        return Err(bad_counts);
    }
    let live_head = if version >= 3 {
        LIVE_HEAD_V3
    } else {
        LIVE_HEAD_V1
    };
    let rra_defs_at = DS_DEF
        .checked_mul(ds)
        .and_then(|d| d.checked_add(STAT_HEAD))
        .ok_or_else(|| bad_counts.clone())?;
    let defs_end = RRA_DEF
        .checked_mul(rra)
        .and_then(|r| r.checked_add(rra_defs_at))
        .ok_or_else(|| bad_counts.clone())?;
    // Bounds the loop below by the buffer, so a lying rra_cnt cannot make us
    // spin over billions of entries.
    if defs_end > len {
        return Err(too_short(defs_end));
    }
    let header = (|| {
        let cdp = CDP_PREP.checked_mul(ds)?.checked_mul(rra)?;
        defs_end
            .checked_add(live_head)?
            .checked_add(PDP_PREP.checked_mul(ds)?)?
            .checked_add(cdp)?
            .checked_add(RRA_PTR.checked_mul(rra)?)
    })()
    .ok_or_else(|| bad_counts.clone())?;
    let mut rows: u64 = 0;
    for i in 0..rra {
        let at = rra_defs_at + i * RRA_DEF + RRA_DEF_ROW_CNT;
        let row_cnt = u64_at(bytes, at).ok_or(too_short(at + 8))?;
        rows = rows
            .checked_add(row_cnt)
            .ok_or_else(|| bad_counts.clone())?;
    }
    let expected = rows
        .checked_mul(ds)
        .and_then(|v| v.checked_mul(VALUE))
        .and_then(|v| v.checked_add(header))
        .ok_or_else(|| bad_counts.clone())?;
    if expected != len {
        return Err(RrdInvalid::SizeMismatch {
            expected,
            actual: len,
        });
    }
    Ok(RrdInfo {
        version,
        ds_count: ds,
        rra_count: rra,
        expected_size: expected,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic but well-formed file: `ds` sources, the given row counts.
    pub(crate) fn synth(version: &[u8; 4], ds: u64, rows: &[u64]) -> Vec<u8> {
        let rra = rows.len() as u64;
        let live = if version >= b"0003" { 16 } else { 8 };
        let header = 128 + 120 * ds + 120 * rra + live + 112 * ds + 80 * ds * rra + 8 * rra;
        let total = header + 8 * ds * rows.iter().sum::<u64>();
        let mut b = vec![0u8; total as usize];
        b[..4].copy_from_slice(b"RRD\0");
        b[4..8].copy_from_slice(version);
        b[16..24].copy_from_slice(&FLOAT_COOKIE.to_ne_bytes());
        b[24..32].copy_from_slice(&ds.to_ne_bytes());
        b[32..40].copy_from_slice(&rra.to_ne_bytes());
        for (i, r) in rows.iter().enumerate() {
            let at = (128 + 120 * ds + 120 * i as u64 + 24) as usize;
            b[at..at + 8].copy_from_slice(&r.to_ne_bytes());
        }
        b
    }

    #[test]
    fn synthetic_files_of_every_version_validate() {
        for v in [b"0001", b"0002", b"0003", b"0004", b"0005"] {
            let b = synth(v, 2, &[10, 20]);
            let info = validate_rrd(&b).unwrap();
            assert_eq!(info.ds_count, 2);
            assert_eq!(info.rra_count, 2);
            assert_eq!(info.expected_size, b.len() as u64);
        }
        // Version 1-2 header is 8 bytes shorter: a v3-sized file is wrong.
        let mut b = synth(b"0003", 1, &[5]);
        b[4..8].copy_from_slice(b"0002");
        assert!(matches!(
            validate_rrd(&b),
            Err(RrdInvalid::SizeMismatch { .. })
        ));
    }

    #[test]
    fn rejects_hostile_headers_without_panicking() {
        let good = synth(b"0003", 1, &[5]);
        for (off, val) in [
            (24, u64::MAX),
            (32, u64::MAX),
            (24, 0),
            (32, 0),
            (32, 1 << 40),
        ] {
            let mut b = good.clone();
            b[off..off + 8].copy_from_slice(&val.to_ne_bytes());
            assert!(validate_rrd(&b).is_err(), "offset {off} value {val}");
        }
        let mut b = good.clone();
        let at = 128 + 120 + 24;
        b[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(matches!(
            validate_rrd(&b),
            Err(RrdInvalid::BadCounts { .. })
        ));
        for len in 0..good.len() {
            assert!(validate_rrd(&good[..len]).is_err(), "len {len}");
        }
        let mut b = good.clone();
        b[4..8].copy_from_slice(b"0006");
        assert_eq!(
            validate_rrd(&b),
            Err(RrdInvalid::BadVersion {
                found: "0006".into()
            })
        );
        assert_eq!(validate_rrd(b"not an rrd"), Err(RrdInvalid::BadMagic));
    }
}
