//! A minimal, safe pickle reader: it interprets the opcode stream into a [`Value`] tree and never imports
//! or calls anything. `GLOBAL`/`REDUCE`/`BUILD`/persistent ids are kept as data for the caller to interpret
//! (CIFAR python batches, PyTorch `data.pkl` inside `.pt`/`.ckpt` zip archives).
//!
//! Entry point: [`parse`] (protocols 0–5). Helpers: [`Value::get`] and friends for navigation,
//! [`numpy::ndarray`] to recover a pickled NumPy array's raw bytes.
#![warn(missing_docs)]

pub mod machine;
pub mod numpy;
mod value;

pub use machine::{parse, parse_with_limits, Limits, PickleError};

/// A decoded pickle value. Object construction is recorded, never executed.
///
/// Conventions for opcodes that have no variant of their own:
/// * `NEWOBJ cls args`, `NEWOBJ_EX cls args kwargs`, `INST`, `OBJ` → [`Value::Reduce`] with the class as
///   the callable (`NEWOBJ_EX` args are `Tuple([args, kwargs])`).
/// * `EMPTY_SET`/`FROZENSET` → `Reduce { callable: Global("builtins", "set" | "frozenset"), args: Tuple([List]) }`,
///   i.e. exactly how protocol 2 pickles a set.
/// * `BYTEARRAY8` → [`Value::Bytes`]; protocol-0/2 byte strings (`STRING`, `BINSTRING`,
///   `SHORT_BINSTRING`) → [`Value::Str`] decoded as latin-1, like `pickle.load(encoding="latin1")`.
/// * `SETITEM(S)`/`APPEND(S)` applied to a value that is not a dict/list (a dict or list subclass built by
///   `REDUCE`/`NEWOBJ`, e.g. `OrderedDict` or Lightning's `AttributeDict`) → `Build { obj, state: Dict | List }`
///   holding the items; `REDUCE` of `collections.OrderedDict` with no arguments is a plain [`Value::Dict`].
/// * Memoised values are copies: a container mutated after `PUT` is re-copied into the memo after each
///   mutation, so later `GET`s see its final contents (shared references become equal copies).
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
