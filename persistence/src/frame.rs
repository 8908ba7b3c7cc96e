//! The on-disk shape of the journal: file headers and record frames.
//!
//! A file starts with `PATJ`, a format byte and the LSN of its first record.
//! A record is framed as
//! `len: u32 | crc32c: u32 | version: u8 | lsn: u64 | payload`, little endian,
//! where `version` is the payload's schema version (see [`crate::codec`]) and
//! `len` counts the bytes after the CRC (9 + payload) and the CRC covers
//! the same bytes. `lsn` (log sequence number) is one more than the record
//! before it, across files.

/// Magic bytes at the start of every journal file.
pub const FILE_MAGIC: &[u8; 4] = b"PATJ";
/// Version of the file layout.
pub const FILE_FORMAT: u8 = 1;
/// Bytes of a file header: magic, format, first LSN.
pub const FILE_HEADER_LEN: usize = 4 + 1 + 8;
/// Bytes of a frame before its payload: len, crc, version, lsn.
pub const FRAME_OVERHEAD: usize = 4 + 4 + 1 + 8;
/// Largest payload a record may carry.
pub const PAYLOAD_MAX: usize = 16 * 1024 * 1024;

/// A file header for a file whose first record is `first_lsn`.
pub fn file_header(first_lsn: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..4].copy_from_slice(FILE_MAGIC);
    h[4] = FILE_FORMAT;
    h[5..].copy_from_slice(&first_lsn.to_le_bytes());
    h
}

/// The first LSN of a file, if its header is valid.
pub fn parse_file_header(bytes: &[u8]) -> Option<u64> {
    let h = bytes.get(..FILE_HEADER_LEN)?;
    (&h[..4] == FILE_MAGIC && h[4] == FILE_FORMAT).then(|| u64::from_le_bytes(h[5..].try_into().expect("8 bytes")))
}

/// Appends one framed record to `out`; `version` is the schema version of
/// the payload's encoding ([`crate::codec`] reads it back).
pub fn encode(out: &mut Vec<u8>, lsn: u64, version: u8, payload: &[u8]) {
    let len = (1 + 8 + payload.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(version);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub lsn: u64,
    pub version: u8,
    pub payload: &'a [u8],
    /// Bytes the frame takes, overhead included.
    pub len: usize,
}

/// Why the bytes at an offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadFrame {
    /// The bytes end before the frame does (a write cut short).
    Truncated,
    /// The length is impossible.
    Length(u32),
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("record cut short by the end of the file"),
            Self::Length(len) => write!(f, "impossible record length {len}"),
            Self::Checksum => f.write_str("CRC32C mismatch"),
        }
    }
}

/// Decodes the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, BadFrame> {
    let header: [u8; 8] = bytes.get(..8).ok_or(BadFrame::Truncated)?.try_into().expect("8 bytes");
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    if (len as usize) < 9 || len as usize > 9 + PAYLOAD_MAX {
        return Err(BadFrame::Length(len));
    }
    let body = bytes.get(8..8 + len as usize).ok_or(BadFrame::Truncated)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) {
        return Err(BadFrame::Checksum);
    }
    let lsn = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
    Ok(Frame { lsn, version: body[0], payload: &body[9..], len: 8 + len as usize })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_detect_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 1, b"hello");
        encode(&mut buf, 8, 1, b"");
        let first = decode(&buf).unwrap();
        assert_eq!((first.lsn, first.payload, first.len), (7, &b"hello"[..], FRAME_OVERHEAD + 5));
        let second = decode(&buf[first.len..]).unwrap();
        assert_eq!((second.lsn, second.payload.len()), (8, 0));
        for cut in 0..first.len {
            assert_eq!(decode(&buf[..cut]), Err(BadFrame::Truncated), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[12] ^= 0x10;
        assert_eq!(decode(&flipped), Err(BadFrame::Checksum));
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Err(BadFrame::Length(u32::MAX)));
        assert_eq!(parse_file_header(&file_header(42)), Some(42));
        assert_eq!(parse_file_header(b"NOPE\x01\0\0\0\0\0\0\0\0"), None);
    }
}
