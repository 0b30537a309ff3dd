//! Navigation helpers on [`Value`]: dictionary lookup, string/int/bytes views.

use crate::Value;

impl Value {
    /// The string of a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of a [`Value::Int`] or [`Value::Bool`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Raw bytes of a [`Value::Bytes`], of a latin-1 [`Value::Str`] (a protocol-2 `str` or the argument of
    /// `_codecs.encode(s, "latin1")`, which is how Python 3 pickles `bytes` at protocol 2), or of that
    /// `_codecs.encode` reduction itself. `None` for anything else or a string with a char above U+00FF.
    pub fn as_bytes_latin1(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            Value::Bytes(b) => Some(std::borrow::Cow::Borrowed(b)),
            Value::Str(s) => {
                let mut out = Vec::with_capacity(s.len());
                for ch in s.chars() {
                    let c = ch as u32;
                    if c > 0xFF {
                        return None;
                    }
                    out.push(c as u8);
                }
                Some(std::borrow::Cow::Owned(out))
            }
            Value::Reduce { callable, args } => match (callable.as_ref(), args.as_ref()) {
                (Value::Global { module, name }, Value::Tuple(a))
                    if module == "_codecs" && name == "encode" && !a.is_empty() =>
                {
                    a[0].as_bytes_latin1()
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The items of a dict: a [`Value::Dict`], a dict with attributes (`Build { obj: Dict, .. }`), or the
    /// items set on a dict subclass (`Build { state: Dict }`, see the crate-level conventions).
    pub fn dict_items(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(items) => Some(items),
            // An OrderedDict with attributes (PyTorch's `state_dict` carries `_metadata`) is
            // `Build { obj: Dict(items), state: {attributes} }`: the items are the object's.
            Value::Build { obj, state } => match (obj.as_ref(), state.as_ref()) {
                (Value::Dict(items), _) => Some(items),
                (_, Value::Dict(items)) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// Looks up a string key in a dict (see [`Value::dict_items`]); the last binding wins, like Python.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict_items()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The elements of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// `Some((module, name))` for a [`Value::Global`].
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }
}
