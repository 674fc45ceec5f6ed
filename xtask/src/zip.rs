//! A minimal, deterministic zip writer for wheels: deflated regular files with Unix modes, no
//! directories, no zip64 (a wheel of one binary is far below 4 GiB), every timestamp
//! 1980-01-01 00:00 (the zip epoch), so the same inputs always give the same bytes.
//!
//! Format: PKWARE's APPNOTE.TXT (local file header, data, central directory, end of central
//! directory record). The install test has Python's `zipfile` check the result and pip install
//! it.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// Deflate (APPNOTE 4.4.5).
const METHOD_DEFLATE: u16 = 8;
/// "Version needed to extract": 2.0, deflate.
const VERSION_NEEDED: u16 = 20;
/// "Version made by": Unix (3) in the high byte, so readers take the file mode from the high
/// 16 bits of the external attributes.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// MS-DOS date of 1980-01-01: (year - 1980) << 9 | month << 5 | day.
const DOS_DATE: u16 = (1 << 5) | 1;
/// MS-DOS time 00:00:00.
const DOS_TIME: u16 = 0;
/// `S_IFREG`: the entries are regular files.
const S_IFREG: u32 = 0o100_000;

/// One file already written, as the central directory describes it.
struct Entry {
    name: String,
    mode: u32,
    crc: u32,
    compressed: u32,
    size: u32,
    offset: u32,
}

/// A zip archive built in memory.
#[derive(Default)]
pub struct ZipWriter {
    out: Vec<u8>,
    entries: Vec<Entry>,
}

fn too_large(what: &str) -> String {
    format!("{what} does not fit a zip without zip64 (4 GiB, 65535 entries)")
}

impl ZipWriter {
    /// Adds a regular file `name` (a relative path with `/` separators) with permission bits
    /// `mode` (e.g. 0o755).
    pub fn add(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), String> {
        if name.is_empty() || name.starts_with('/') || name.contains('\\') || name.ends_with('/') {
            return Err(format!("bad zip entry name {name:?}"));
        }
        let mut crc = Crc::new();
        crc.update(data);
        let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
        encoder
            .write_all(data)
            .map_err(|e| format!("deflating {name}: {e}"))?;
        let deflated = encoder
            .finish()
            .map_err(|e| format!("deflating {name}: {e}"))?;
        let u32_of = |n: usize| u32::try_from(n).map_err(|_| too_large(name));
        let name_len = u16::try_from(name.len()).map_err(|_| too_large(name))?;
        let entry = Entry {
            name: name.to_string(),
            mode: mode & 0o7777,
            crc: crc.sum(),
            compressed: u32_of(deflated.len())?,
            size: u32_of(data.len())?,
            offset: u32_of(self.out.len())?,
        };
        let out = &mut self.out;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&METHOD_DEFLATE.to_le_bytes());
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&entry.crc.to_le_bytes());
        out.extend_from_slice(&entry.compressed.to_le_bytes());
        out.extend_from_slice(&entry.size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&deflated);
        self.entries.push(entry);
        Ok(())
    }

    /// Writes the central directory and returns the archive's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        let count = u16::try_from(self.entries.len()).map_err(|_| too_large("the archive"))?;
        let start = u32::try_from(self.out.len()).map_err(|_| too_large("the archive"))?;
        let out = &mut self.out;
        for e in &self.entries {
            out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            out.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            out.extend_from_slice(&VERSION_NEEDED.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&METHOD_DEFLATE.to_le_bytes());
            out.extend_from_slice(&DOS_TIME.to_le_bytes());
            out.extend_from_slice(&DOS_DATE.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&e.compressed.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            // Checked to fit when the entry was added.
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
            out.extend_from_slice(&0u16.to_le_bytes()); // comment length
            out.extend_from_slice(&0u16.to_le_bytes()); // disk number start
            out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            out.extend_from_slice(&((S_IFREG | e.mode) << 16).to_le_bytes());
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
        }
        let size = u32::try_from(out.len() - start as usize)
            .map_err(|_| too_large("the central directory"))?;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // this disk
        out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Reads the archive back through its central directory: (name, mode, data) per entry.
    fn read_back(zip: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let eocd = zip.len() - 22;
        assert_eq!(u32_at(zip, eocd), 0x0605_4b50);
        let count = u16_at(zip, eocd + 10) as usize;
        let mut at = u32_at(zip, eocd + 16) as usize;
        let mut files = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(zip, at), 0x0201_4b50);
            let crc = u32_at(zip, at + 16);
            let compressed = u32_at(zip, at + 20) as usize;
            let size = u32_at(zip, at + 24) as usize;
            let name_len = u16_at(zip, at + 28) as usize;
            let mode = u32_at(zip, at + 38) >> 16;
            let local = u32_at(zip, at + 42) as usize;
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(zip, local), 0x0403_4b50);
            assert_eq!(u32_at(zip, local + 14), crc);
            let data_at = local + 30 + u16_at(zip, local + 26) as usize;
            let mut data = Vec::new();
            flate2::read::DeflateDecoder::new(&zip[data_at..data_at + compressed])
                .read_to_end(&mut data)
                .unwrap();
            assert_eq!(data.len(), size);
            let mut check = Crc::new();
            check.update(&data);
            assert_eq!(check.sum(), crc, "{name}");
            files.push((name, mode, data));
            at += 46 + name_len;
        }
        files
    }

    #[test]
    fn entries_read_back_with_their_modes() {
        let mut zip = ZipWriter::default();
        zip.add(
            "pkg-1.data/scripts/tool",
            0o755,
            &[0x7f, b'E', b'L', b'F', 0, 1],
        )
        .unwrap();
        zip.add("pkg-1.dist-info/RECORD", 0o644, b"").unwrap();
        let bytes = zip.finish().unwrap();
        let files = read_back(&bytes);
        assert_eq!(
            files,
            vec![
                (
                    "pkg-1.data/scripts/tool".to_string(),
                    S_IFREG | 0o755,
                    vec![0x7f, b'E', b'L', b'F', 0, 1]
                ),
                (
                    "pkg-1.dist-info/RECORD".to_string(),
                    S_IFREG | 0o644,
                    vec![]
                ),
            ]
        );
    }

    #[test]
    fn same_input_same_bytes() {
        let build = || {
            let mut zip = ZipWriter::default();
            zip.add("a/b", 0o644, b"hello hello hello").unwrap();
            zip.finish().unwrap()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn bad_names_are_refused() {
        let mut zip = ZipWriter::default();
        for name in ["", "/abs", "dir/", "back\\slash"] {
            assert!(zip.add(name, 0o644, b"x").is_err(), "{name:?}");
        }
    }
}
