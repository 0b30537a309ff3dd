//! Zero-copy, memory-mapped access to the data of a C-order `.npy` file, one window of rows at a time.
//!
//! [`MappedNpy::open`] parses and checks the header (the data section must be exactly shape × item size, the
//! array C-ordered or 1-D) without reading the data; [`MappedNpy::window`] maps rows `first..first + n`
//! read-only and hands them out as `&[f32]`, `&[f64]` or `&[i64]` straight from the page cache when the file's
//! dtype, byte order and alignment allow ([`Window::as_f32`], ...). Mapping window by window and unmapping
//! each one when it is dropped keeps the resident memory bounded by the window size, whatever the file size.
//!
//! The one `unsafe` operation is creating the mapping (memmap2's `Mmap::map` is `unsafe` because the slice it
//! returns is only valid while no other process truncates or rewrites the file). decal maps inputs read-only
//! and never writes them; if another process truncates a file while decal is reading it, the process is
//! killed by `SIGBUS` (as numpy's `memmap` would be) rather than reading changed data silently. This is a
//! documented exception to the workspace's `unsafe_code = "deny"` (ARCHITECTURE.md, Invariants).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::npy::{read_header, DType, Header};
use crate::IoError;

/// A `.npy` file opened for windowed, memory-mapped reading of its rows.
#[derive(Debug)]
pub struct MappedNpy {
    path: PathBuf,
    file: File,
    header: Header,
    rows: usize,
    row_len: usize,
}

/// Rows `first..first + rows` of a [`MappedNpy`], mapped read-only (unmapped on drop).
#[derive(Debug)]
pub struct Window {
    map: Option<memmap2::Mmap>,
    dtype: DType,
    big_endian: bool,
    rows: usize,
}

impl MappedNpy {
    /// Opens `path` and checks its header: C order (or at most 1-D), and a data section of exactly
    /// shape × item size bytes (computed without overflow).
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let header = read_header(path)?;
        let io = |source| IoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if header.fortran_order && header.shape.len() > 1 {
            return Err(IoError::Format {
                path: path.to_path_buf(),
                message: "Fortran-order arrays cannot be memory-mapped by rows; save with np.ascontiguousarray"
                    .into(),
            });
        }
        let elements = header
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let expected = elements.and_then(|e| e.checked_mul(header.dtype.size() as u64));
        let actual = file_len.saturating_sub(header.data_offset as u64);
        if expected != Some(actual) {
            return Err(IoError::SizeMismatch {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                dtype: header.descr.clone(),
                expected: expected.unwrap_or(u64::MAX),
                actual,
            });
        }
        let rows = header.shape.first().copied().unwrap_or(1);
        let row_len = if header.shape.is_empty() {
            1
        } else {
            header.shape[1..].iter().product()
        };
        Ok(MappedNpy {
            path: path.to_path_buf(),
            file,
            header,
            rows,
            row_len,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Number of rows (the first dimension; 1 for a 0-d array).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Elements per row (product of the dimensions after the first).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Maps rows `first..first + rows` (clamped to the file). An empty range maps nothing.
    pub fn window(&self, first: usize, rows: usize) -> Result<Window, IoError> {
        let first = first.min(self.rows);
        let rows = rows.min(self.rows - first);
        let row_bytes = (self.row_len * self.header.dtype.size()) as u64;
        let len = rows as u64 * row_bytes;
        let map = if len == 0 {
            None
        } else {
            let offset = self.header.data_offset as u64 + first as u64 * row_bytes;
            let len = usize::try_from(len).map_err(|_| IoError::Format {
                path: self.path.clone(),
                message: format!("a window of {rows} rows does not fit in the address space"),
            })?;
            // SAFETY: a read-only mapping of a file decal never writes; the bytes are only valid while no
            // other process truncates or rewrites the file (then the process gets SIGBUS, see module docs).
            // The range lies inside the file: `open` checked its length against the header.
            #[allow(unsafe_code)]
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(offset)
                    .len(len)
                    .map(&self.file)
            }
            .map_err(|source| IoError::Io {
                path: self.path.clone(),
                source,
            })?;
            Some(map)
        };
        Ok(Window {
            map,
            dtype: self.header.dtype,
            big_endian: self.header.big_endian,
            rows,
        })
    }
}

impl Window {
    /// Number of rows mapped.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The raw bytes of the window.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    fn native<T: bytemuck::Pod>(&self, dtype: DType) -> Option<&[T]> {
        if self.dtype != dtype || self.big_endian != cfg!(target_endian = "big") {
            return None;
        }
        bytemuck::try_cast_slice(self.bytes()).ok()
    }

    /// The window as float32 values without copying, when the file holds native-endian float32 at an aligned
    /// offset (otherwise `None`: decode [`Self::bytes`] instead).
    pub fn as_f32(&self) -> Option<&[f32]> {
        self.native(DType::F32)
    }

    /// The window as float64 values without copying (see [`Self::as_f32`]).
    pub fn as_f64(&self) -> Option<&[f64]> {
        self.native(DType::F64)
    }

    /// The window as int64 values without copying (see [`Self::as_f32`]).
    pub fn as_i64(&self) -> Option<&[i64]> {
        self.native(DType::I64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::{write, NpyArray};

    #[test]
    fn windows_see_the_rows_without_copying() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.npy");
        let data: Vec<f32> = (0..30).map(|i| i as f32 * 0.5).collect();
        write(&p, &NpyArray::from_f32(vec![10, 3], data.clone())).unwrap();
        let m = MappedNpy::open(&p).unwrap();
        assert_eq!((m.rows(), m.row_len()), (10, 3));
        let w = m.window(4, 3).unwrap();
        assert_eq!(w.rows(), 3);
        assert_eq!(w.as_f32().unwrap(), &data[12..21]);
        assert!(w.as_f64().is_none() && w.as_i64().is_none());
        // Clamped at the end, empty past it.
        assert_eq!(m.window(8, 100).unwrap().as_f32().unwrap(), &data[24..30]);
        assert_eq!(m.window(10, 5).unwrap().rows(), 0);
        let q = dir.path().join("y.npy");
        write(&q, &NpyArray::from_i64(vec![4], vec![3, 1, 4, 1])).unwrap();
        let y = MappedNpy::open(&q).unwrap();
        assert_eq!(y.window(1, 2).unwrap().as_i64().unwrap(), &[1, 4]);
    }

    #[test]
    fn a_truncated_file_or_hostile_shape_is_refused_before_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.npy");
        write(&p, &NpyArray::from_f32(vec![10, 3], vec![0.0; 30])).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let err = MappedNpy::open(&p).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A declared shape whose byte count overflows u64.
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }";
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + header.len() + 1) % 64;
        let text = format!("{header}{}\n", " ".repeat(pad));
        h.extend_from_slice(&(text.len() as u16).to_le_bytes());
        h.extend_from_slice(text.as_bytes());
        let q = dir.path().join("huge.npy");
        std::fs::write(&q, &h).unwrap();
        let err = MappedNpy::open(&q).unwrap_err().to_string();
        assert!(err.contains("huge.npy"), "{err}");
    }
}
