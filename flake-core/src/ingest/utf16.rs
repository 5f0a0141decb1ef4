//! UTF-16 to UTF-8 transcoding of a report, for the JUnit parser (quick-xml
//! reads ASCII-compatible bytes only; gotestsum on Windows writes UTF-16).
//!
//! The contract: every character before a malformed code unit reaches the
//! reader before the error does, and the error names the unit's byte offset
//! in the file. quick-xml's own `DecodingReader` decodes a whole buffer ahead
//! and drops it on malformed input, so which error a report got (and where)
//! depended on how the file happened to be read; the junit fuzz target found
//! both. Memory: one output buffer of [`OUT_CAP`] bytes plus a few.

use std::io::{self, BufRead, Read};

/// Output bytes decoded per refill.
const OUT_CAP: usize = 8 * 1024;

/// A [`BufRead`] of UTF-8 over a UTF-16 input.
pub(crate) struct Utf16Reader<'a> {
    inner: &'a mut dyn BufRead,
    /// Bytes of the input consumed so far.
    taken: u64,
    /// Read position in `dec.out`.
    pos: usize,
    dec: Decoder,
}

/// The decoding state, apart from the input so both can be borrowed at once.
struct Decoder {
    big_endian: bool,
    out: Vec<u8>,
    /// First byte of a code unit split between two reads.
    half: Option<u8>,
    /// A high surrogate waiting for its low half, and its offset.
    high: Option<(u16, u64)>,
    /// Offset of the malformed code unit and what is wrong with it, once met.
    malformed: Option<(u64, &'static str)>,
}

impl<'a> Utf16Reader<'a> {
    /// Reads `inner`, whose first bytes tell the byte order (a BOM, which is
    /// skipped, or `<` as UTF-16); little-endian when they do not.
    pub(crate) fn new(inner: &'a mut dyn BufRead) -> io::Result<Self> {
        let head = inner.fill_buf()?;
        let big_endian = head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0, b'<']);
        Ok(Utf16Reader {
            inner,
            taken: 0,
            pos: 0,
            dec: Decoder {
                big_endian,
                out: Vec::with_capacity(OUT_CAP + 4),
                half: None,
                high: None,
                malformed: None,
            },
        })
    }

    /// Byte offset in the file of the malformed code unit, if one was met.
    pub(crate) fn malformed_at(&self) -> Option<u64> {
        self.dec.malformed.map(|(at, _)| at)
    }

    /// Decodes into `out` until it holds something, the input ends, or a
    /// malformed unit comes next (then `out` keeps what precedes it, and the
    /// error waits for the next call).
    fn refill(&mut self) -> io::Result<()> {
        let dec = &mut self.dec;
        dec.out.clear();
        self.pos = 0;
        if let Some((_, what)) = dec.malformed {
            return Err(malformed(what));
        }
        while dec.out.len() < OUT_CAP {
            let src = self.inner.fill_buf()?;
            if src.is_empty() {
                if dec.half.is_some() {
                    dec.malformed = Some((self.taken - 1, "the input ends inside a code unit"));
                } else if let Some((_, at)) = dec.high.take() {
                    dec.malformed = Some((at, UNPAIRED));
                }
                return match dec.malformed {
                    Some((_, what)) if dec.out.is_empty() => Err(malformed(what)),
                    _ => Ok(()),
                };
            }
            let mut used = 0;
            let mut ok = true;
            while ok && used < src.len() && dec.out.len() < OUT_CAP {
                // `at` is the offset of the unit's first byte in the file.
                let (unit, at) = match dec.half.take() {
                    Some(first) => {
                        used += 1;
                        ([first, src[used - 1]], self.taken - 1)
                    }
                    None if used + 1 == src.len() => {
                        dec.half = Some(src[used]);
                        used += 1;
                        break;
                    }
                    None => {
                        used += 2;
                        ([src[used - 2], src[used - 1]], self.taken + used as u64 - 2)
                    }
                };
                ok = dec.push(unit, at);
            }
            self.inner.consume(used);
            self.taken += used as u64;
            if !ok && dec.out.is_empty() {
                return Err(malformed(UNPAIRED));
            }
            if !ok {
                return Ok(());
            }
        }
        Ok(())
    }
}

const UNPAIRED: &str = "an unpaired surrogate";

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed UTF-16: {what}"),
    )
}

impl Decoder {
    /// Appends the character of `unit` (at byte `at`); `false` when the unit
    /// makes the input malformed (`malformed` then says where).
    fn push(&mut self, unit: [u8; 2], at: u64) -> bool {
        let unit = if self.big_endian {
            u16::from_be_bytes(unit)
        } else {
            u16::from_le_bytes(unit)
        };
        let c = match (self.high.take(), unit) {
            // A byte order mark says nothing; it is not text.
            (None, 0xFEFF) if at == 0 => return true,
            (None, 0xD800..=0xDBFF) => {
                self.high = Some((unit, at));
                return true;
            }
            (Some((high, _)), 0xDC00..=0xDFFF) => char::from_u32(
                0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00),
            ),
            (Some((_, high_at)), _) => {
                self.malformed = Some((high_at, UNPAIRED));
                return false;
            }
            (None, 0xDC00..=0xDFFF) => None,
            (None, _) => char::from_u32(u32::from(unit)),
        };
        let Some(c) = c else {
            self.malformed = Some((at, UNPAIRED));
            return false;
        };
        let mut buf = [0; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        true
    }
}

impl Read for Utf16Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Utf16Reader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.dec.out.len() {
            self.refill()?;
        }
        Ok(&self.dec.out[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.dec.out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in s.encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        bytes
    }

    fn read_all(bytes: &[u8], read_size: usize) -> (String, Option<u64>) {
        let mut input = io::BufReader::with_capacity(read_size, bytes);
        let mut r = Utf16Reader::new(&mut input).unwrap();
        let mut out = Vec::new();
        let ok = r.read_to_end(&mut out).is_ok();
        assert_eq!(ok, r.malformed_at().is_none());
        (String::from_utf8(out).unwrap(), r.malformed_at())
    }

    #[test]
    fn every_character_before_a_malformed_unit_arrives_first_however_it_is_read() {
        let mut bytes = utf16le("<a>ünï 😀</a>");
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&0xDC00u16.to_le_bytes());
        bytes.extend_from_slice(&utf16le("<b/>")[2..]);
        for read_size in [2, 3, 7, 8192] {
            assert_eq!(
                read_all(&bytes, read_size),
                ("<a>ünï 😀</a>".to_owned(), Some(good)),
                "{read_size}"
            );
        }
    }

    #[test]
    fn big_endian_and_a_high_surrogate_without_its_pair() {
        let mut bytes = vec![0xFE, 0xFF];
        for unit in "<x>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_be_bytes());
        }
        bytes.extend_from_slice(&0xD800u16.to_be_bytes());
        bytes.extend_from_slice(&u16::from(b'y').to_be_bytes());
        assert_eq!(read_all(&bytes, 3), ("<x>".to_owned(), Some(8)));
        bytes.truncate(8);
        assert_eq!(read_all(&bytes, 64), ("<x>".to_owned(), None));
        bytes.push(0);
        assert_eq!(read_all(&bytes, 64), ("<x>".to_owned(), Some(8)));
    }
}
