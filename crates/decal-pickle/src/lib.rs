//! A minimal, safe pickle reader: it interprets the opcode stream into a [`Value`] tree and never imports
//! or calls anything. `GLOBAL`/`REDUCE`/`BUILD`/persistent ids are kept as data for the caller to interpret
//! (CIFAR python batches, PyTorch `data.pkl` inside `.pt`/`.ckpt` zip archives).

/// A decoded pickle value. Object construction is recorded, never executed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A larger integer, little-endian two's complement bytes (LONG1/LONG4).
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A unicode string (or a latin-1 decoded protocol-2 `str`).
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A reference to `module.name` (not imported).
    Global {
        /// Module path.
        module: String,
        /// Attribute name.
        name: String,
    },
    /// `callable(*args)` (not called).
    Reduce {
        /// The callable, usually a `Global`.
        callable: Box<Value>,
        /// The argument tuple.
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)` (not called).
    Build {
        /// The object.
        obj: Box<Value>,
        /// Its state.
        state: Box<Value>,
    },
    /// A persistent id (PyTorch uses it for tensor storages).
    PersistentId(Box<Value>),
}
