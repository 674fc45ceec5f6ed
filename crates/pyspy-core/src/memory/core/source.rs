//! Where a core's bytes come from: a file read with `pread`, or bytes in memory (tests and
//! fuzzing). Never a mapping: a core truncated or replaced while it is read gives an error, not
//! a SIGBUS.

use super::CoreError;
use std::io;

/// Bytes at offsets: the one operation the core reader needs from its input.
pub trait ReadAt: Send + Sync + std::fmt::Debug {
    /// How many bytes there are.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`; fails if there are fewer.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A file on disk, read with `pread`; its length is taken once, when it is opened.
#[derive(Debug)]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> io::Result<FileSource> {
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(FileSource {
            file,
            len: meta.len(),
        })
    }
}

impl ReadAt for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let short = || io::Error::from(io::ErrorKind::UnexpectedEof);
        let start = usize::try_from(offset).map_err(|_| short())?;
        let end = start.checked_add(buf.len()).ok_or_else(short)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(short)?);
        Ok(())
    }
}

/// Reads `len` bytes at `offset` of `src` into a new vector, after checking that they are
/// there and that `len` is at most `max` (sizes come from the file and may be lies).
pub fn read_vec(
    src: &dyn ReadAt,
    offset: u64,
    len: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, CoreError> {
    if len > max {
        return Err(CoreError::corrupt(format!(
            "{what} claims {len} bytes, more than the {max} pyspy accepts"
        )));
    }
    let end = offset.checked_add(len).ok_or_else(|| {
        CoreError::corrupt(format!("{what} at offset {offset:#x} wraps around"))
    })?;
    if end > src.size() {
        return Err(CoreError::truncated(src.size(), end, what));
    }
    let mut buf = vec![0u8; len as usize];
    src.read_exact_at(&mut buf, offset)
        .map_err(|e| CoreError::io(format!("reading {what}"), e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sources_read_inside_only() {
        let src = vec![1u8, 2, 3, 4];
        let mut buf = [0u8; 2];
        src.read_exact_at(&mut buf, 2).unwrap();
        assert_eq!(buf, [3, 4]);
        assert!(src.read_exact_at(&mut buf, 3).is_err());
        assert!(src.read_exact_at(&mut buf, u64::MAX).is_err());
        assert_eq!(read_vec(&src, 1, 2, 8, "x").unwrap(), [2, 3]);
        assert!(read_vec(&src, 1, 9, 8, "x").is_err());
        assert!(read_vec(&src, 3, 2, 8, "x").is_err());
        assert!(read_vec(&src, u64::MAX, 2, 8, "x").is_err());
    }
}
