//! NumPy `.npy` files: reading (format versions 1.0, 2.0 and 3.0, little- and big-endian, C or Fortran
//! order) and atomic writing (version 1.0, or 2.0 when the header needs it; always little-endian, C order).
//!
//! Format reference: numpy/lib/format.py (NEP 1). A file is the magic `\x93NUMPY`, a major and minor version
//! byte, a header length (u16 LE for 1.0, u32 LE for 2.0/3.0), and an ASCII (3.0: UTF-8) Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and a final `\n` so that
//! the data starts at a multiple of 64 bytes (16 in files from very old numpy, which we also accept).
//!
//! Supported dtypes: `b1 u1 i1 i2 i4 i8 u2 u4 u8 f2 f4 f8`. Half-precision (`f2`) is widened to `F32` on
//! read (exactly: every f16 is representable in f32). Structured, string, object and complex dtypes are
//! rejected with an error that names the dtype. Fortran-order arrays are transposed into C order on read,
//! so `NpyArray::data` is always row-major.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::IoError;

/// An n-dimensional array read from or written to a `.npy` file. `data` is in C (row-major) order and
/// holds exactly `shape.iter().product()` elements (1 for a 0-d array).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions, outermost first; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements in row-major order.
    pub data: NpyData,
}

/// Typed element storage of an [`NpyArray`]. `f2` files are read into `F32`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum NpyData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Element type as declared in a `.npy` header (before any widening on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    U16,
    U32,
    U64,
    F16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The numpy type code without byte-order character (`f4`, `i8`, `b1`, ...).
    pub fn code(self) -> &'static str {
        match self {
            DType::Bool => "b1",
            DType::U8 => "u1",
            DType::I8 => "i1",
            DType::I16 => "i2",
            DType::I32 => "i4",
            DType::I64 => "i8",
            DType::U16 => "u2",
            DType::U32 => "u4",
            DType::U64 => "u8",
            DType::F16 => "f2",
            DType::F32 => "f4",
            DType::F64 => "f8",
        }
    }

    /// Whether the dtype is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::F32 | DType::F64)
    }

    fn from_code(code: &str) -> Option<DType> {
        Some(match code {
            "b1" | "?" => DType::Bool,
            "u1" | "B" => DType::U8,
            "i1" | "b" => DType::I8,
            "i2" | "h" => DType::I16,
            "i4" | "i" => DType::I32,
            "i8" | "q" => DType::I64,
            "u2" | "H" => DType::U16,
            "u4" | "I" => DType::U32,
            "u8" | "Q" => DType::U64,
            "f2" | "e" => DType::F16,
            "f4" | "f" => DType::F32,
            "f8" | "d" => DType::F64,
            _ => return None,
        })
    }
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Format version `(major, minor)`.
    pub version: (u8, u8),
    /// Element type.
    pub dtype: DType,
    /// Whether the data are stored big-endian.
    pub big_endian: bool,
    /// Whether the data are stored in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Offset of the first data byte from the start of the file.
    pub data_offset: usize,
    /// The `descr` string exactly as in the file (for messages).
    pub descr: String,
}

impl Header {
    /// Number of elements (`shape` product; 1 for a 0-d array).
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of data bytes the header requires.
    pub fn data_bytes(&self) -> u64 {
        self.num_elements() as u64 * self.dtype.size() as u64
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

impl NpyArray {
    /// A `u8` array. The length of `data` is checked against `shape` when written.
    pub fn from_u8(shape: Vec<usize>, data: Vec<u8>) -> Self {
        NpyArray {
            shape,
            data: NpyData::U8(data),
        }
    }
    /// An `f32` array. The length of `data` is checked against `shape` when written.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        NpyArray {
            shape,
            data: NpyData::F32(data),
        }
    }
    /// An `f64` array. The length of `data` is checked against `shape` when written.
    pub fn from_f64(shape: Vec<usize>, data: Vec<f64>) -> Self {
        NpyArray {
            shape,
            data: NpyData::F64(data),
        }
    }
    /// An `i64` array. The length of `data` is checked against `shape` when written.
    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        NpyArray {
            shape,
            data: NpyData::I64(data),
        }
    }

    /// Number of stored elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no stored elements.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }

    /// The element type of `data` (`F16` never appears: it is widened to `F32` on read).
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Checks that `data` holds exactly `shape.iter().product()` elements.
    pub fn validate(&self) -> Result<(), IoError> {
        let expected = checked_product(&self.shape).ok_or_else(|| {
            IoError::value(
                "array",
                format!("shape {:?} overflows the address space", self.shape),
            )
        })?;
        if expected != self.len() {
            return Err(IoError::value(
                "array",
                format!(
                    "shape {:?} needs {expected} elements but data holds {}",
                    self.shape,
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    /// All elements converted to `f64` (exact for every supported dtype except `u64`/`i64` above 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            NpyData::Bool(v) => v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
            NpyData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I16(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U16(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::F64(v) => v.clone(),
        }
    }

    /// Class labels as `i64`: accepts every integer dtype (and `bool` as 0/1) and floating-point arrays
    /// whose values are all finite integers; anything else is an error naming the first bad element.
    /// The shape is not checked here (callers decide whether `[N]` or `[N, 1]` is acceptable).
    pub fn to_labels(&self) -> Result<Vec<i64>, IoError> {
        let float_labels = |v: &mut dyn Iterator<Item = f64>| -> Result<Vec<i64>, IoError> {
            let mut out = Vec::new();
            for (i, x) in v.enumerate() {
                // 2^63 is exactly representable; anything at or beyond it does not fit in i64.
                const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
                if !x.is_finite() || x.fract() != 0.0 || !(-TWO_POW_63..TWO_POW_63).contains(&x) {
                    return Err(IoError::value(
                        "labels",
                        format!("element {i} is {x}, not an integer class index"),
                    ));
                }
                out.push(x as i64);
            }
            Ok(out)
        };
        Ok(match &self.data {
            NpyData::Bool(v) => v.iter().map(|&b| b as i64).collect(),
            NpyData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::I64(v) => v.clone(),
            NpyData::U16(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::U32(v) => v.iter().map(|&x| x as i64).collect(),
            NpyData::U64(v) => {
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    let y = i64::try_from(x).map_err(|_| {
                        IoError::value(
                            "labels",
                            format!("element {i} is {x}, too large for a class index"),
                        )
                    })?;
                    out.push(y);
                }
                out
            }
            NpyData::F32(v) => float_labels(&mut v.iter().map(|&x| x as f64))?,
            NpyData::F64(v) => float_labels(&mut v.iter().copied())?,
        })
    }
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NpyData::Bool(v) => v.len(),
            NpyData::U8(v) => v.len(),
            NpyData::I8(v) => v.len(),
            NpyData::I16(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::U16(v) => v.len(),
            NpyData::U32(v) => v.len(),
            NpyData::U64(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            NpyData::Bool(_) => DType::Bool,
            NpyData::U8(_) => DType::U8,
            NpyData::I8(_) => DType::I8,
            NpyData::I16(_) => DType::I16,
            NpyData::I32(_) => DType::I32,
            NpyData::I64(_) => DType::I64,
            NpyData::U16(_) => DType::U16,
            NpyData::U32(_) => DType::U32,
            NpyData::U64(_) => DType::U64,
            NpyData::F32(_) => DType::F32,
            NpyData::F64(_) => DType::F64,
        }
    }
}

fn checked_product(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Reads a whole `.npy` file into memory.
pub fn read(path: &Path) -> Result<NpyArray, IoError> {
    let bytes = std::fs::read(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Parses `.npy` bytes; `name` is used in error messages (a file path or `archive.npz:member`).
pub fn from_bytes(bytes: &[u8], name: &Path) -> Result<NpyArray, IoError> {
    let header = parse_header(bytes, name)?;
    let data = &bytes[header.data_offset..];
    let expected = header.data_bytes();
    if data.len() as u64 != expected {
        return Err(IoError::SizeMismatch {
            path: name.to_path_buf(),
            shape: header.shape.clone(),
            dtype: header.descr.clone(),
            expected,
            actual: data.len() as u64,
        });
    }
    let decoded = decode(data, header.dtype, header.big_endian);
    let mut array = NpyArray {
        shape: header.shape.clone(),
        data: decoded,
    };
    if header.fortran_order && array.shape.len() > 1 {
        array.data = fortran_to_c(&array.data, &array.shape);
    }
    Ok(array)
}

/// Reads just the header of a `.npy` file (the first few hundred bytes), e.g. to learn the shape of a large
/// file before streaming it with [`NpyReader`].
pub fn read_header(path: &Path) -> Result<Header, IoError> {
    let mut f = std::fs::File::open(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_header_from(&mut f, path)
}

fn read_header_from(f: &mut impl Read, path: &Path) -> Result<Header, IoError> {
    let io = |source| IoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut prefix = [0u8; 12];
    let got = read_up_to(f, &mut prefix).map_err(io)?;
    let prefix = &prefix[..got];
    if got < 10 {
        // Let parse_header produce the precise message (bad magic or truncated header).
        return parse_header(prefix, path);
    }
    let (len_bytes, header_len) = header_length(prefix, path)?;
    let total = 8 + len_bytes + header_len;
    let mut buf = prefix.to_vec();
    if buf.len() < total {
        // header_length has bounded the declaration; still grow only as bytes arrive.
        f.take((total - buf.len()) as u64)
            .read_to_end(&mut buf)
            .map_err(io)?;
    } else {
        buf.truncate(total);
    }
    parse_header(&buf, path)
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The longest header decal reads (numpy itself refuses headers over 10,000 bytes unless told otherwise):
/// a 2.0/3.0 header may declare up to 4 GiB, which is never a real dict literal.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Returns (bytes used by the length field, header length) after checking magic, version and that the
/// declared header length is at most [`MAX_HEADER_BYTES`].
fn header_length(bytes: &[u8], path: &Path) -> Result<(usize, usize), IoError> {
    let (len_bytes, header_len) = header_length_unchecked(bytes, path)?;
    if header_len > MAX_HEADER_BYTES {
        return Err(IoError::format(
            path,
            format!(
                "header declares {header_len} bytes, more than the {MAX_HEADER_BYTES}-byte limit (corrupt file?)"
            ),
        ));
    }
    Ok((len_bytes, header_len))
}

fn header_length_unchecked(bytes: &[u8], path: &Path) -> Result<(usize, usize), IoError> {
    if bytes.len() < 6 || &bytes[..6] != MAGIC {
        return Err(IoError::format(
            path,
            "not a .npy file (missing \\x93NUMPY magic)",
        ));
    }
    if bytes.len() < 8 {
        return Err(IoError::format(
            path,
            "truncated .npy header (no version bytes)",
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    match major {
        1 => {
            if bytes.len() < 10 {
                return Err(IoError::format(
                    path,
                    "truncated .npy header (no header length)",
                ));
            }
            Ok((2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize))
        }
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(IoError::format(
                    path,
                    "truncated .npy header (no header length)",
                ));
            }
            Ok((
                4,
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            ))
        }
        _ => Err(IoError::format(
            path,
            format!("unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0)"),
        )),
    }
}

/// Parses the magic, version and header dict; `bytes` must hold at least the whole header.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<Header, IoError> {
    let (len_bytes, header_len) = header_length(bytes, path)?;
    let start = 8 + len_bytes;
    let end = start + header_len;
    if bytes.len() < end {
        return Err(IoError::format(
            path,
            format!(
                "truncated .npy header: declares {header_len} header bytes but only {} are present",
                bytes.len().saturating_sub(start)
            ),
        ));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let text = if major == 3 {
        std::str::from_utf8(&bytes[start..end])
            .map_err(|_| IoError::format(path, "header is not valid UTF-8"))?
    } else {
        if !bytes[start..end].is_ascii() {
            return Err(IoError::format(
                path,
                "header is not ASCII (required for format 1.0/2.0)",
            ));
        }
        std::str::from_utf8(&bytes[start..end]).expect("ASCII is valid UTF-8")
    };
    let dict = match literal::parse(text) {
        Ok(literal::Lit::Dict(items)) => items,
        Ok(_) => return Err(IoError::format(path, "header is not a Python dict literal")),
        Err(e) => {
            return Err(IoError::format(
                path,
                format!("malformed header {:?}: {e}", text.trim_end()),
            ))
        }
    };
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| matches!(k, literal::Lit::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let descr = match get("descr") {
        Some(literal::Lit::Str(s)) => s.clone(),
        Some(other) => {
            return Err(IoError::format(
                path,
                format!("unsupported dtype {other:?} (structured dtypes are not supported)"),
            ))
        }
        None => return Err(IoError::format(path, "header has no 'descr' key")),
    };
    let fortran_order = match get("fortran_order") {
        Some(literal::Lit::Bool(b)) => *b,
        Some(_) => return Err(IoError::format(path, "'fortran_order' is not True/False")),
        None => return Err(IoError::format(path, "header has no 'fortran_order' key")),
    };
    let shape = match get("shape") {
        Some(literal::Lit::Tuple(items)) => {
            let mut shape = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    literal::Lit::Int(d) if *d >= 0 && *d <= usize::MAX as i128 => {
                        shape.push(*d as usize)
                    }
                    _ => {
                        return Err(IoError::format(
                            path,
                            format!("shape entry {item:?} is not a non-negative integer"),
                        ))
                    }
                }
            }
            shape
        }
        Some(_) => return Err(IoError::format(path, "'shape' is not a tuple")),
        None => return Err(IoError::format(path, "header has no 'shape' key")),
    };
    // The product of the non-zero dimensions must fit too: a (2^62, 0) array holds no data, but its row
    // count would still drive loops and allocations of the code that consumes it.
    let nonzero: Vec<usize> = shape.iter().copied().filter(|&d| d != 0).collect();
    if checked_product(&nonzero)
        .and_then(|n| n.checked_mul(8))
        .is_none()
    {
        return Err(IoError::format(
            path,
            format!("shape {shape:?} is too large"),
        ));
    }
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr.as_str()),
    };
    let dtype = DType::from_code(code).ok_or_else(|| {
        IoError::format(
            path,
            format!("unsupported dtype '{descr}' (supported: b1 u1 i1 i2 i4 i8 u2 u4 u8 f2 f4 f8)"),
        )
    })?;
    // '=' is native order; decal only builds for little-endian targets (x86_64, aarch64).
    let big_endian = order == '>' && dtype.size() > 1;
    Ok(Header {
        version: (major, minor),
        dtype,
        big_endian,
        fortran_order,
        shape,
        data_offset: end,
        descr,
    })
}

fn decode(data: &[u8], dtype: DType, big_endian: bool) -> NpyData {
    macro_rules! ints {
        ($t:ty, $n:expr, $variant:ident) => {{
            let v = data
                .chunks_exact($n)
                .map(|c| {
                    let arr: [u8; $n] = c
                        .try_into()
                        .expect("chunks_exact yields slices of length n");
                    if big_endian {
                        <$t>::from_be_bytes(arr)
                    } else {
                        <$t>::from_le_bytes(arr)
                    }
                })
                .collect();
            NpyData::$variant(v)
        }};
    }
    match dtype {
        DType::Bool => NpyData::Bool(data.iter().map(|&b| b != 0).collect()),
        DType::U8 => NpyData::U8(data.to_vec()),
        DType::I8 => NpyData::I8(data.iter().map(|&b| b as i8).collect()),
        DType::I16 => ints!(i16, 2, I16),
        DType::I32 => ints!(i32, 4, I32),
        DType::I64 => ints!(i64, 8, I64),
        DType::U16 => ints!(u16, 2, U16),
        DType::U32 => ints!(u32, 4, U32),
        DType::U64 => ints!(u64, 8, U64),
        DType::F32 => ints!(f32, 4, F32),
        DType::F64 => ints!(f64, 8, F64),
        DType::F16 => NpyData::F32(
            data.chunks_exact(2)
                .map(|c| {
                    let bits = if big_endian {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    };
                    f16_to_f32(bits)
                })
                .collect(),
        ),
    }
}

/// Converts IEEE 754 binary16 bits to f32 exactly (subnormals, infinities and NaN included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exp = ((bits >> 10) & 0x1f) as u32;
    let frac = (bits & 0x3ff) as u32;
    let out = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac · 2^-24, exactly representable in f32.
            let magnitude = frac as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -magnitude } else { magnitude };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(out)
}

/// Reorders column-major data of `shape` into row-major order.
fn fortran_to_c(data: &NpyData, shape: &[usize]) -> NpyData {
    fn permute<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
        let n = v.len();
        if n == 0 {
            return Vec::new();
        }
        let ndim = shape.len();
        // Fortran strides: stride[0] = 1, stride[d] = stride[d-1] * shape[d-1].
        let mut fstride = vec![1usize; ndim];
        for d in 1..ndim {
            fstride[d] = fstride[d - 1] * shape[d - 1];
        }
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; ndim];
        for _ in 0..n {
            let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
            out.push(v[off]);
            // Increment the C-order multi-index (last axis fastest).
            for d in (0..ndim).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }
    match data {
        NpyData::Bool(v) => NpyData::Bool(permute(v, shape)),
        NpyData::U8(v) => NpyData::U8(permute(v, shape)),
        NpyData::I8(v) => NpyData::I8(permute(v, shape)),
        NpyData::I16(v) => NpyData::I16(permute(v, shape)),
        NpyData::I32(v) => NpyData::I32(permute(v, shape)),
        NpyData::I64(v) => NpyData::I64(permute(v, shape)),
        NpyData::U16(v) => NpyData::U16(permute(v, shape)),
        NpyData::U32(v) => NpyData::U32(permute(v, shape)),
        NpyData::U64(v) => NpyData::U64(permute(v, shape)),
        NpyData::F32(v) => NpyData::F32(permute(v, shape)),
        NpyData::F64(v) => NpyData::F64(permute(v, shape)),
    }
}

/// Serialises an array to `.npy` bytes (little-endian, C order; format 1.0 unless the header needs 2.0).
pub fn to_bytes(array: &NpyArray) -> Result<Vec<u8>, IoError> {
    array.validate()?;
    let dtype = array.dtype();
    let order = if dtype.size() == 1 { '|' } else { '<' };
    let shape = match array.shape.len() {
        1 => format!("({},)", array.shape[0]),
        _ => format!(
            "({})",
            array
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{order}{}', 'fortran_order': False, 'shape': {shape}, }}",
        dtype.code()
    );
    // Pad so that magic + version + length field + header is a multiple of 64, ending in '\n' (NEP 1).
    let pad_to = |prefix: usize| {
        let unpadded = prefix + dict.len() + 1;
        let total = unpadded.div_ceil(64) * 64;
        total - prefix
    };
    let (version, len_bytes) = if pad_to(10) <= u16::MAX as usize {
        (1u8, 2usize)
    } else {
        (2u8, 4usize)
    };
    let header_len = pad_to(8 + len_bytes);
    let mut out = Vec::with_capacity(8 + len_bytes + header_len + array.len() * dtype.size());
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(8 + len_bytes + header_len - 1, b' ');
    out.push(b'\n');
    match &array.data {
        NpyData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
        NpyData::U8(v) => out.extend_from_slice(v),
        NpyData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        NpyData::I16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U16(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::U64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        NpyData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    Ok(out)
}

/// Writes an array to `path` atomically (temp file + rename via `decal_core::write_atomic`).
pub fn write(path: &Path, array: &NpyArray) -> Result<(), IoError> {
    let bytes = to_bytes(array).map_err(|e| match e {
        IoError::Value { message, .. } => IoError::Value {
            what: path.display().to_string(),
            message,
        },
        other => other,
    })?;
    decal_core::write_atomic(path, &bytes)?;
    Ok(())
}

/// Streams a C-order numeric `.npy` file row by row (a row = all elements after the first axis), converting
/// to `f64`, with memory bounded by the chunk size rather than the file size.
pub struct NpyReader {
    path: PathBuf,
    file: std::io::BufReader<std::fs::File>,
    header: Header,
    row_len: usize,
    rows_left: usize,
    buf: Vec<u8>,
}

impl NpyReader {
    /// Opens `path`, parses its header and checks that the file length matches shape × item size.
    /// Fortran-order files with more than one dimension are rejected (read them whole with [`read`]).
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let io = |source| IoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let header = read_header_from(&mut file, path)?;
        let actual = file_len.saturating_sub(header.data_offset as u64);
        if actual != header.data_bytes() {
            return Err(IoError::SizeMismatch {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                dtype: header.descr.clone(),
                expected: header.data_bytes(),
                actual,
            });
        }
        if header.fortran_order && header.shape.len() > 1 {
            return Err(IoError::format(
                path,
                "Fortran-order arrays cannot be streamed; save with np.ascontiguousarray",
            ));
        }
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(header.data_offset as u64))
            .map_err(io)?;
        let rows = header.shape.first().copied().unwrap_or(1);
        let row_len = if header.shape.is_empty() {
            1
        } else {
            header.shape[1..].iter().product()
        };
        Ok(NpyReader {
            path: path.to_path_buf(),
            file: std::io::BufReader::with_capacity(1 << 20, file),
            header,
            row_len,
            rows_left: rows,
            buf: Vec::new(),
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Elements per row (product of all dimensions after the first).
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Reads up to `max_rows` rows into `out` (cleared first) as `f64`; returns the number of rows read,
    /// 0 at the end of the file.
    pub fn read_rows_f64(&mut self, max_rows: usize, out: &mut Vec<f64>) -> Result<usize, IoError> {
        out.clear();
        let rows = max_rows.min(self.rows_left);
        if rows == 0 {
            return Ok(0);
        }
        let size = self.header.dtype.size();
        let nbytes = rows * self.row_len * size;
        self.buf.resize(nbytes, 0);
        self.file
            .read_exact(&mut self.buf)
            .map_err(|source| IoError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.rows_left -= rows;
        let be = self.header.big_endian;
        out.reserve(rows * self.row_len);
        match (self.header.dtype, be) {
            (DType::F32, false) => out.extend(
                self.buf
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64),
            ),
            (DType::F64, false) => {
                out.extend(self.buf.chunks_exact(8).map(|c| {
                    f64::from_le_bytes(c.try_into().expect("chunks_exact yields 8 bytes"))
                }))
            }
            (dtype, be) => {
                let decoded = decode(&self.buf, dtype, be);
                let tmp = NpyArray {
                    shape: vec![decoded.len()],
                    data: decoded,
                };
                out.extend(tmp.to_f64_vec());
            }
        }
        Ok(rows)
    }
}

mod literal {
    //! A tiny parser for the Python literals that appear in `.npy` headers: dicts, tuples, lists, strings,
    //! integers (with Python 2's optional `L` suffix), `True`, `False` and `None`.

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Lit {
        Str(String),
        Int(i128),
        Bool(bool),
        None,
        Tuple(Vec<Lit>),
        List(Vec<Lit>),
        Dict(Vec<(Lit, Lit)>),
    }

    pub(super) fn parse(text: &str) -> Result<Lit, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.s.get(self.i).copied()
        }
        fn value(&mut self) -> Result<Lit, String> {
            match self.peek() {
                None => Err("unexpected end of header".into()),
                Some(b'{') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    loop {
                        if self.peek() == Some(b'}') {
                            self.i += 1;
                            break;
                        }
                        let k = self.value()?;
                        if self.peek() != Some(b':') {
                            return Err(format!("expected ':' at byte {}", self.i));
                        }
                        self.i += 1;
                        let v = self.value()?;
                        items.push((k, v));
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {}
                            _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                        }
                    }
                    Ok(Lit::Dict(items))
                }
                Some(open @ (b'(' | b'[')) => {
                    self.i += 1;
                    let close = if open == b'(' { b')' } else { b']' };
                    let mut items = Vec::new();
                    loop {
                        if self.peek() == Some(close) {
                            self.i += 1;
                            break;
                        }
                        items.push(self.value()?);
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(c) if c == close => {}
                            _ => {
                                return Err(format!(
                                    "expected ',' or '{}' at byte {}",
                                    close as char, self.i
                                ))
                            }
                        }
                    }
                    Ok(if open == b'(' {
                        Lit::Tuple(items)
                    } else {
                        Lit::List(items)
                    })
                }
                Some(q @ (b'\'' | b'"')) => {
                    self.i += 1;
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i] != q {
                        if self.s[self.i] == b'\\' {
                            return Err(
                                "escape sequences in header strings are not supported".into()
                            );
                        }
                        self.i += 1;
                    }
                    if self.i >= self.s.len() {
                        return Err("unterminated string".into());
                    }
                    let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                    self.i += 1;
                    Ok(Lit::Str(text))
                }
                Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => {
                    let start = self.i;
                    self.i += 1;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII digits");
                    let v: i128 = text.parse().map_err(|_| format!("bad integer {text:?}"))?;
                    if self.i < self.s.len() && (self.s[self.i] == b'L' || self.s[self.i] == b'l') {
                        self.i += 1;
                    }
                    Ok(Lit::Int(v))
                }
                Some(_) => {
                    for (word, lit) in [
                        ("True", Lit::Bool(true)),
                        ("False", Lit::Bool(false)),
                        ("None", Lit::None),
                    ] {
                        if self.s[self.i..].starts_with(word.as_bytes()) {
                            self.i += word.len();
                            return Ok(lit);
                        }
                    }
                    Err(format!(
                        "unexpected character {:?} at byte {}",
                        self.s[self.i] as char, self.i
                    ))
                }
            }
        }
    }
}
