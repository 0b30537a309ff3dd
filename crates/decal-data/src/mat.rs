//! A reader for MATLAB level-5 `.mat` files (the format of SVHN's `*_32x32.mat`), following the
//! "MAT-File Format" specification: a 128-byte header, then data elements with 8-byte tags (or the
//! 4-byte "small data element" form), `miMATRIX` arrays (flags, dimensions, name, real part) and
//! `miCOMPRESSED` (zlib) elements as written by MATLAB and `scipy.io.savemat(do_compression=True)`.
//!
//! Only numeric, real, non-sparse arrays are decoded; other variables (cells, structs, sparse, complex)
//! are skipped with their names reported in [`MatFile::skipped`]. Lengths are checked before any
//! allocation; a compressed element is inflated incrementally up to its declared size only.

use std::io::Read;

/// A decoded numeric array, column-major as MATLAB stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// Dimensions (at least two).
    pub dims: Vec<usize>,
    /// MATLAB class code (6 double, 7 single, 8 int8, 9 uint8, … 15 uint64).
    pub class: u8,
    /// The values, column-major.
    pub data: MatData,
}

/// Values of a [`MatArray`]: `uint8` data stays bytes, everything else becomes `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// `uint8` storage (images).
    U8(Vec<u8>),
    /// Any other numeric storage, converted.
    F64(Vec<f64>),
}

impl MatData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as `f64`.
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            MatData::U8(v) => v[i] as f64,
            MatData::F64(v) => v[i],
        }
    }
}

/// A parsed `.mat` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MatFile {
    /// Decoded numeric arrays in file order.
    pub arrays: Vec<MatArray>,
    /// Names of variables that are not real numeric arrays.
    pub skipped: Vec<String>,
}

impl MatFile {
    /// The array called `name`.
    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.arrays.iter().find(|a| a.name == name)
    }
}

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        let a: [u8; 4] = s.try_into().expect("4 bytes");
        Ok(if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.b.len() - self.pos {
            return Err(format!(
                "truncated: element at byte {} needs {n} bytes, {} remain",
                self.pos,
                self.b.len() - self.pos
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads one tag: `(type, payload)`, consuming padding to the 8-byte boundary.
    fn element(&mut self) -> Result<(u32, &'a [u8]), String> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            // Small data element: type in the low half, size in the high half, data in the next 4 bytes.
            let (ty, n) = (first & 0xFFFF, (first >> 16) as usize);
            if n > 4 {
                return Err(format!(
                    "small data element of {n} bytes at byte {}",
                    self.pos - 4
                ));
            }
            let data = self.take(4)?;
            return Ok((ty, &data[..n]));
        }
        let n = self.u32()? as usize;
        let data = self.take(n)?;
        if first != MI_COMPRESSED {
            let pad = (8 - n % 8) % 8;
            let pad = pad.min(self.b.len() - self.pos);
            self.pos += pad;
        }
        Ok((first, data))
    }
}

/// Parses a whole `.mat` (level 5) file from bytes. Errors are descriptive strings (the caller adds the
/// file name).
pub fn parse_mat_bytes(bytes: &[u8]) -> Result<MatFile, String> {
    if bytes.len() < 128 {
        return Err(format!(
            "{} bytes is too short for a MAT-file header (128)",
            bytes.len()
        ));
    }
    if bytes.starts_with(b"MATLAB 7.3") || bytes.starts_with(b"\x89HDF") {
        return Err(
            "MATLAB v7.3 (HDF5) files are not supported; save with -v7 or scipy.io.savemat".into(),
        );
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(format!(
                "not a MAT-file v5: endian indicator {other:?} (expected \"IM\" or \"MI\")"
            ))
        }
    };
    let mut cur = Cursor {
        b: bytes,
        pos: 128,
        big_endian,
    };
    let mut out = MatFile::default();
    while cur.pos < bytes.len() {
        let (ty, data) = cur.element()?;
        match ty {
            MI_MATRIX => parse_matrix(data, big_endian, &mut out)?,
            MI_COMPRESSED => {
                let inner = inflate_element(data)?;
                let mut c = Cursor {
                    b: &inner,
                    pos: 0,
                    big_endian,
                };
                while c.pos < inner.len() {
                    let (t, d) = c.element()?;
                    if t == MI_MATRIX {
                        parse_matrix(d, big_endian, &mut out)?;
                    }
                }
            }
            _ => {} // other top-level elements carry no variables
        }
    }
    Ok(out)
}

/// Inflates a zlib stream whose first 8 bytes (once inflated) are a tag giving the inner size; inflation
/// stops at that size, so a hostile stream cannot grow memory beyond what it declares (and delivers).
fn inflate_element(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut z = flate2::read::ZlibDecoder::new(data);
    let mut tag = [0u8; 8];
    z.read_exact(&mut tag)
        .map_err(|e| format!("compressed element: cannot inflate tag: {e}"))?;
    // The tag's byte order follows the file; the size is the second u32 in either order — try LE then BE,
    // and take the one that is plausible.
    let le = u32::from_le_bytes(tag[4..8].try_into().expect("4")) as u64;
    let be = u32::from_be_bytes(tag[4..8].try_into().expect("4")) as u64;
    let ty_le = u32::from_le_bytes(tag[0..4].try_into().expect("4"));
    let size = if ty_le == MI_MATRIX || ty_le >> 16 != 0 {
        le
    } else {
        be
    };
    if size + 8 > decal_core::bounded::deflate_bound(data.len() as u64) {
        return Err(format!(
            "compressed element: tag declares {size} bytes, more than its {} zlib bytes can hold",
            data.len()
        ));
    }
    let mut out = tag.to_vec();
    // Grows as data arrives and stops at the declared size.
    z.take(size)
        .read_to_end(&mut out)
        .map_err(|e| format!("compressed element: zlib error: {e}"))?;
    if (out.len() as u64) < size + 8 {
        return Err(format!(
            "compressed element: inflated {} bytes, tag declares {}",
            out.len() - 8,
            size
        ));
    }
    Ok(out)
}

fn numeric(ty: u32, d: &[u8], big_endian: bool) -> Result<MatData, String> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {{
            if d.len() % $n != 0 {
                return Err(format!(
                    "numeric element of {} bytes is not a multiple of {}",
                    d.len(),
                    $n
                ));
            }
            d.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunk");
                    (if big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }) as f64
                })
                .collect()
        }};
    }
    Ok(match ty {
        MI_UINT8 => MatData::U8(d.to_vec()),
        MI_INT8 => MatData::F64(d.iter().map(|&v| v as i8 as f64).collect()),
        MI_INT16 => MatData::F64(conv!(i16, 2)),
        MI_UINT16 => MatData::F64(conv!(u16, 2)),
        MI_INT32 => MatData::F64(conv!(i32, 4)),
        MI_UINT32 => MatData::F64(conv!(u32, 4)),
        MI_SINGLE => MatData::F64(conv!(f32, 4)),
        MI_DOUBLE => MatData::F64(conv!(f64, 8)),
        MI_INT64 => MatData::F64(conv!(i64, 8)),
        MI_UINT64 => MatData::F64(conv!(u64, 8)),
        other => return Err(format!("unsupported numeric element type {other}")),
    })
}

fn parse_matrix(body: &[u8], big_endian: bool, out: &mut MatFile) -> Result<(), String> {
    if body.is_empty() {
        return Ok(()); // an empty miMATRIX is an empty array
    }
    let mut c = Cursor {
        b: body,
        pos: 0,
        big_endian,
    };
    let (fty, flags) = c.element()?;
    if fty != MI_UINT32 || flags.len() < 8 {
        return Err("miMATRIX: array flags element missing".into());
    }
    let f0 = if big_endian {
        u32::from_be_bytes(flags[0..4].try_into().expect("4"))
    } else {
        u32::from_le_bytes(flags[0..4].try_into().expect("4"))
    };
    let class = (f0 & 0xFF) as u8;
    let complex = f0 & 0x800 != 0;
    let (dty, dims_b) = c.element()?;
    if dty != MI_INT32 {
        return Err("miMATRIX: dimensions element missing".into());
    }
    let dims = match numeric(MI_INT32, dims_b, big_endian)? {
        MatData::F64(v) => v,
        MatData::U8(_) => unreachable!("int32 converts to f64"),
    };
    if dims.iter().any(|&d| d < 0.0) {
        return Err(format!("miMATRIX: negative dimension in {dims:?}"));
    }
    let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let (nty, name_b) = c.element()?;
    let name = if nty == MI_INT8 || nty == MI_UTF8 || nty == MI_UINT8 {
        String::from_utf8_lossy(name_b).into_owned()
    } else {
        return Err("miMATRIX: array name element missing".into());
    };
    if !(6..=15).contains(&class) || complex {
        out.skipped.push(name);
        return Ok(());
    }
    let (rty, real) = c.element()?;
    let data = numeric(rty, real, big_endian).map_err(|e| format!("variable '{name}': {e}"))?;
    let n = dims
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| format!("variable '{name}': dimensions overflow"))?;
    if data.len() != n {
        return Err(format!(
            "variable '{name}': {} values for dimensions {dims:?} ({n})",
            data.len()
        ));
    }
    // A uint8 class stored in another type (MATLAB's compact storage) still yields bytes.
    let data = match (class, data) {
        (9, MatData::F64(v))
            if v.iter()
                .all(|x| (0.0..=255.0).contains(x) && x.fract() == 0.0) =>
        {
            MatData::U8(v.iter().map(|&x| x as u8).collect())
        }
        (_, d) => d,
    };
    out.arrays.push(MatArray {
        name,
        dims,
        class,
        data,
    });
    Ok(())
}
