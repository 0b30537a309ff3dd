//! Recovering NumPy arrays from a parsed pickle, without NumPy.
//!
//! `pickle.dumps(np.ndarray)` produces
//! `BUILD(REDUCE(numpy.core.multiarray._reconstruct, (ndarray, (0,), b'b')), (1, shape, dtype, fortran, raw))`
//! where `dtype` is `BUILD(REDUCE(numpy.dtype, ('u1', False, True)), (3, '<', …))` and `raw` is the C- or
//! Fortran-ordered buffer (a `str` in Python 2 pickles, `bytes` or `_codecs.encode(…, 'latin1')` in
//! Python 3 ones). NumPy 2 writes `numpy._core` instead of `numpy.core`; both are accepted.

use crate::Value;

/// A NumPy array's metadata and raw buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Type code without byte order, e.g. `u1`, `f4`, `i8`.
    pub dtype: String,
    /// Byte order: `<`, `>` or `|` (not applicable).
    pub byte_order: char,
    /// True when `data` is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// The raw buffer.
    pub data: Vec<u8>,
}

impl NdArray {
    /// Number of elements (product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn err<T>(what: &str) -> Result<T, String> {
    Err(format!("not a pickled numpy array: {what}"))
}

/// Interprets a pickled NumPy array. The error says which part of the structure was unexpected.
pub fn ndarray(v: &Value) -> Result<NdArray, String> {
    let Value::Build { obj, state } = v else {
        return err("expected BUILD");
    };
    let Value::Reduce { callable, .. } = obj.as_ref() else {
        return err("expected REDUCE");
    };
    match callable.as_global() {
        Some(("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct")) => {}
        _ => return err("callable is not numpy.core.multiarray._reconstruct"),
    }
    let Some(st) = state.as_seq() else {
        return err("state is not a tuple");
    };
    if st.len() != 5 {
        return err("state tuple does not have 5 elements");
    }
    let mut shape = Vec::new();
    for d in st[1]
        .as_seq()
        .ok_or("not a pickled numpy array: shape is not a tuple")?
    {
        match d.as_int() {
            Some(x) if x >= 0 => shape.push(x as usize),
            _ => return err("negative or non-integer dimension"),
        }
    }
    let (dtype, byte_order) = dtype(&st[2])?;
    let fortran_order = matches!(st[3], Value::Bool(true)) || st[3].as_int() == Some(1);
    let data = st[4]
        .as_bytes_latin1()
        .ok_or("not a pickled numpy array: buffer is not bytes")?
        .into_owned();
    let item = dtype
        .get(1..)
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let n = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or("shape overflows")?;
    if item == 0 || n.checked_mul(item) != Some(data.len()) {
        return Err(format!(
            "numpy array buffer holds {} bytes, shape {shape:?} of {dtype} needs {}",
            data.len(),
            n.saturating_mul(item)
        ));
    }
    Ok(NdArray {
        shape,
        dtype,
        byte_order,
        fortran_order,
        data,
    })
}

fn dtype(v: &Value) -> Result<(String, char), String> {
    let (obj, state) = match v {
        Value::Build { obj, state } => (obj.as_ref(), Some(state.as_ref())),
        other => (other, None),
    };
    let Value::Reduce { callable, args } = obj else {
        return err("dtype is not a REDUCE");
    };
    match callable.as_global() {
        Some(("numpy", "dtype")) => {}
        _ => return err("dtype callable is not numpy.dtype"),
    }
    let code = args
        .as_seq()
        .and_then(|a| a.first())
        .and_then(|c| c.as_str())
        .ok_or("dtype code missing")?;
    let mut code = code.to_string();
    let mut order = '|';
    if let Some(c) = code
        .chars()
        .next()
        .filter(|c| matches!(c, '<' | '>' | '|' | '='))
    {
        order = c;
        code.remove(0);
    }
    if let Some(o) = state
        .and_then(|s| s.as_seq())
        .and_then(|s| s.get(1))
        .and_then(|o| o.as_str())
    {
        if let Some(c) = o.chars().next() {
            order = c;
        }
    }
    Ok((code, order))
}
