//! The pickle virtual machine: a stack interpreter over the opcode stream of protocols 0–5 that builds a
//! [`Value`] tree instead of Python objects.
//!
//! Safety properties (see the crate docs and the proptest "never panics" suite):
//! * nothing is imported or called; globals and reductions are data;
//! * every length prefix is checked against the bytes that remain before anything is allocated;
//! * nesting depth and the total size of every copy the machine makes (memo writes and reads, `DUP`, the
//!   refresh of memoised containers that are mutated) are bounded ([`Limits`], by default proportional to
//!   the input: 32 MiB + 8 bytes per input byte), so a small hostile input cannot exhaust the stack, the
//!   memory or the time (every value not made by a copy costs at least one input byte).

use std::collections::HashMap;

use crate::Value;

/// Why a pickle could not be parsed. Positions are byte offsets of the offending opcode.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    /// The input ended inside an opcode or before `STOP`.
    #[error("pickle truncated at byte {0}")]
    Truncated(usize),
    /// An opcode byte that no protocol defines.
    #[error("unknown pickle opcode 0x{op:02x} at byte {pos}")]
    UnknownOpcode {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        pos: usize,
    },
    /// A defined opcode this reader does not support (EXT registry codes, out-of-band buffers).
    #[error("unsupported pickle opcode {name} at byte {pos}")]
    Unsupported {
        /// The opcode's name.
        name: &'static str,
        /// Its offset.
        pos: usize,
    },
    /// The opcode stream is inconsistent (stack underflow, missing MARK, bad argument type, …).
    #[error("malformed pickle at byte {pos}: {message}")]
    Malformed {
        /// Offset of the opcode.
        pos: usize,
        /// What is wrong.
        message: String,
    },
    /// A resource limit was hit (length prefix larger than the input, nesting too deep, memo copies too
    /// large).
    #[error("pickle exceeds a limit at byte {pos}: {message}")]
    Limit {
        /// Offset of the opcode.
        pos: usize,
        /// Which limit.
        message: String,
    },
}

/// Resource limits of [`parse_with_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting depth of containers.
    pub max_depth: usize,
    /// Maximum total bytes (approximate heap size) of all copies made while parsing: memo writes (`PUT`,
    /// `MEMOIZE`) and reads (`GET`), `DUP`, and the refresh of a memoised container after `APPEND(S)`,
    /// `SETITEM(S)` or `BUILD` mutated it. Together with the input length this bounds the memory (and the
    /// time) a parse can take.
    pub max_memo_copy_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 512,
            max_memo_copy_bytes: 32 << 20,
        }
    }
}

impl Limits {
    /// The limits [`parse`] uses for an input of `len` bytes: the default depth, and a copy budget of
    /// 32 MiB plus 8 bytes per input byte (a real pickle copies little: a CIFAR batch its data once or twice).
    pub fn for_input(len: usize) -> Limits {
        let d = Limits::default();
        Limits {
            max_memo_copy_bytes: d.max_memo_copy_bytes.saturating_add(len.saturating_mul(8)),
            ..d
        }
    }
}

/// Parses a pickle (protocols 0–5) into a [`Value`] without executing anything, with
/// [`Limits::for_input`] of its length.
pub fn parse(bytes: &[u8]) -> Result<Value, PickleError> {
    parse_with_limits(bytes, Limits::for_input(bytes.len()))
}

/// A value on the stack with its nesting depth and the memo keys that hold copies of it.
#[derive(Debug, Clone)]
struct Slot {
    v: Value,
    depth: usize,
    memo: Vec<u64>,
}

impl Slot {
    fn new(v: Value) -> Slot {
        Slot {
            v,
            depth: 1,
            memo: Vec::new(),
        }
    }
}

/// Approximate heap size of a value, for the memo-copy budget.
fn approx_size(v: &Value) -> usize {
    match v {
        Value::Str(s) => 32 + s.len(),
        Value::Bytes(b) | Value::BigInt(b) => 32 + b.len(),
        Value::List(x) | Value::Tuple(x) => 32 + x.iter().map(approx_size).sum::<usize>(),
        Value::Dict(x) => {
            32 + x
                .iter()
                .map(|(k, v)| approx_size(k) + approx_size(v))
                .sum::<usize>()
        }
        Value::Global { module, name } => 32 + module.len() + name.len(),
        Value::Reduce {
            callable: a,
            args: b,
        }
        | Value::Build { obj: a, state: b } => 32 + approx_size(a) + approx_size(b),
        Value::PersistentId(a) => 32 + approx_size(a),
        _ => 32,
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    stack: Vec<Slot>,
    marks: Vec<usize>,
    memo: HashMap<u64, (Value, usize)>,
    limits: Limits,
    copied: usize,
}

/// Parses with explicit [`Limits`].
pub fn parse_with_limits(bytes: &[u8], limits: Limits) -> Result<Value, PickleError> {
    let mut m = Machine {
        data: bytes,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        limits,
        copied: 0,
    };
    m.run()
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Little-endian two's complement bytes → `Int` when it fits in 64 bits, else `BigInt`.
fn long_from_le(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() <= 8 {
        let neg = b[b.len() - 1] & 0x80 != 0;
        let mut buf = if neg { [0xFFu8; 8] } else { [0u8; 8] };
        buf[..b.len()].copy_from_slice(b);
        return Value::Int(i64::from_le_bytes(buf));
    }
    // Canonical (shortest) two's complement, like Python's `int.to_bytes(signed=True)` would give.
    let mut v = b.to_vec();
    while v.len() > 1 {
        let last = v[v.len() - 1];
        let prev_high = v[v.len() - 2] & 0x80;
        if (last == 0 && prev_high == 0) || (last == 0xFF && prev_high != 0) {
            v.pop();
        } else {
            break;
        }
    }
    if v.len() <= 8 {
        return long_from_le(&v);
    }
    Value::BigInt(v)
}

/// Decimal text (optionally signed) → `Int` or `BigInt` (two's complement little-endian).
fn long_from_decimal(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Magnitude as little-endian base-256.
    let mut mag: Vec<u8> = vec![0];
    for d in digits.bytes() {
        let mut carry = (d - b'0') as u32;
        for byte in mag.iter_mut() {
            let v = *byte as u32 * 10 + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xFF) as u8);
            carry >>= 8;
        }
    }
    mag.push(0); // room for the sign bit
    if neg {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let v = (!*byte) as u16 + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
    }
    Some(long_from_le(&mag))
}

/// Python string-literal escapes of protocol-0 `STRING` arguments (`'...'` or `"..."`).
fn unescape_py_string(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() < 2 || s[0] != s[s.len() - 1] || (s[0] != b'\'' && s[0] != b'"') {
        return None;
    }
    let body = &s[1..s.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {}
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < body.len() && (b'0'..=b'7').contains(&body[i]) {
                    v = v * 8 + (body[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xFF) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Python's `raw-unicode-escape` codec (protocol-0 `UNICODE`).
fn raw_unicode_escape(b: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && (b[i + 1] == b'u' || b[i + 1] == b'U') {
            let n = if b[i + 1] == b'u' { 4 } else { 8 };
            let h = std::str::from_utf8(b.get(i + 2..i + 2 + n)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
            i += 2 + n;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    Some(out)
}

impl<'a> Machine<'a> {
    fn malformed<T>(&self, message: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Malformed {
            pos: self.op_pos,
            message: message.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        if n > self.data.len() - self.pos {
            // A length prefix larger than what remains: refuse before allocating anything.
            // Fixed-size arguments (at most 8 bytes) are simply cut off; a length prefix larger than the
            // whole input is a hostile or corrupt length.
            return Err(if n > 8 && n > self.data.len() {
                PickleError::Limit {
                    pos: self.op_pos,
                    message: format!("length {n} exceeds the {} input bytes", self.data.len()),
                }
            } else {
                PickleError::Truncated(self.data.len())
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn len64(&mut self) -> Result<usize, PickleError> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| PickleError::Limit {
            pos: self.op_pos,
            message: format!("length {n}"),
        })
    }

    /// A text line without its trailing `\n` (`\r\n` tolerated).
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        self.pos += n + 1;
        let l = &rest[..n];
        Ok(l.strip_suffix(b"\r").unwrap_or(l))
    }

    fn line_str(&mut self) -> Result<&'a str, PickleError> {
        let l = self.line()?;
        std::str::from_utf8(l).or_else(|_| self.malformed("text argument is not UTF-8"))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::new(v));
    }

    fn pop(&mut self) -> Result<Slot, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow");
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&mut self) -> Result<&mut Slot, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.malformed("stack underflow");
        }
        Ok(self.stack.last_mut().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Slot>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.malformed("no MARK on the stack");
        };
        Ok(self.stack.split_off(m))
    }

    /// Combines children into a new container slot, enforcing the depth limit.
    fn container(&self, v: Value, children_depth: usize) -> Result<Slot, PickleError> {
        let depth = children_depth + 1;
        if depth > self.limits.max_depth {
            return Err(PickleError::Limit {
                pos: self.op_pos,
                message: format!("nesting deeper than {}", self.limits.max_depth),
            });
        }
        Ok(Slot {
            v,
            depth,
            memo: Vec::new(),
        })
    }

    fn max_depth(slots: &[Slot]) -> usize {
        slots.iter().map(|s| s.depth).max().unwrap_or(0)
    }

    /// Counts `bytes` of copying against [`Limits::max_memo_copy_bytes`]; call before making the copy.
    fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.copied = self.copied.saturating_add(bytes);
        if self.copied > self.limits.max_memo_copy_bytes {
            return Err(PickleError::Limit {
                pos: self.op_pos,
                message: format!(
                    "more than {} bytes of copies (memo, DUP); the input has {} bytes",
                    self.limits.max_memo_copy_bytes,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let size = approx_size(&self.top()?.v);
        self.charge(size)?;
        let slot = self.top()?;
        let copy = (slot.v.clone(), slot.depth);
        // No duplicate check (it would make n PUTs on one value quadratic); a repeated key only makes the
        // refresh of that value cost more, and that cost is charged.
        slot.memo.push(key);
        self.memo.insert(key, copy);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let Some((v, _)) = self.memo.get(&key) else {
            return self.malformed(format!("memo key {key} not found"));
        };
        self.charge(approx_size(v))?;
        let (v, depth) = &self.memo[&key];
        let slot = Slot {
            v: v.clone(),
            depth: *depth,
            memo: Vec::new(),
        };
        self.stack.push(slot);
        Ok(())
    }

    /// After mutating the top slot in place, refresh the memo copies that refer to it (each copy is charged).
    fn refresh_memo_of_top(&mut self) -> Result<(), PickleError> {
        let Some(slot) = self.stack.last() else {
            return Ok(());
        };
        if slot.memo.is_empty() {
            return Ok(());
        }
        let cost = approx_size(&slot.v).saturating_mul(slot.memo.len());
        self.charge(cost)?;
        let slot = self.stack.last().expect("checked above");
        for k in &slot.memo {
            self.memo.insert(*k, (slot.v.clone(), slot.depth));
        }
        Ok(())
    }

    /// `SETITEM(S)`: add key/value pairs to the dict (or dict-like object) on top of the stack.
    fn set_items(&mut self, items: Vec<Slot>) -> Result<(), PickleError> {
        if items.len() % 2 != 0 {
            return self.malformed("SETITEMS with an odd number of stack items");
        }
        let child_depth = Self::max_depth(&items);
        let max_depth = self.limits.max_depth;
        let op_pos = self.op_pos;
        let target = self.top()?;
        let mut it = items.into_iter().map(|s| s.v);
        let pairs = std::iter::from_fn(move || Some((it.next()?, it.next()?)));
        match &mut target.v {
            Value::Dict(d) => d.extend(pairs),
            Value::Build { state, .. } if matches!(state.as_ref(), Value::Dict(_)) => {
                if let Value::Dict(d) = state.as_mut() {
                    d.extend(pairs);
                }
            }
            Value::Reduce { .. } | Value::Build { .. } | Value::Global { .. } => {
                let obj = std::mem::replace(&mut target.v, Value::None);
                target.v = Value::Build {
                    obj: Box::new(obj),
                    state: Box::new(Value::Dict(pairs.collect())),
                };
                target.depth += 1;
            }
            _ => {
                return Err(PickleError::Malformed {
                    pos: op_pos,
                    message: "SETITEM on a non-dict value".into(),
                })
            }
        }
        target.depth = target.depth.max(child_depth + 1);
        if target.depth > max_depth {
            return Err(PickleError::Limit {
                pos: op_pos,
                message: format!("nesting deeper than {max_depth}"),
            });
        }
        self.refresh_memo_of_top()
    }

    /// `APPEND(S)`/`ADDITEMS`: add items to the list (or list-like object) on top of the stack.
    fn append_items(&mut self, items: Vec<Slot>) -> Result<(), PickleError> {
        let child_depth = Self::max_depth(&items);
        let max_depth = self.limits.max_depth;
        let op_pos = self.op_pos;
        let target = self.top()?;
        let vals = items.into_iter().map(|s| s.v);
        match &mut target.v {
            Value::List(l) => l.extend(vals),
            // A set built by EMPTY_SET: Reduce(builtins.set, (List,)).
            Value::Reduce { callable, args }
                if callable.as_global() == Some(("builtins", "set"))
                    && matches!(args.as_seq(), Some([Value::List(_)])) =>
            {
                if let Value::Tuple(a) = args.as_mut() {
                    if let Some(Value::List(l)) = a.first_mut() {
                        l.extend(vals);
                    }
                }
            }
            Value::Build { state, .. } if matches!(state.as_ref(), Value::List(_)) => {
                if let Value::List(l) = state.as_mut() {
                    l.extend(vals);
                }
            }
            Value::Reduce { .. } | Value::Build { .. } | Value::Global { .. } => {
                let obj = std::mem::replace(&mut target.v, Value::None);
                target.v = Value::Build {
                    obj: Box::new(obj),
                    state: Box::new(Value::List(vals.collect())),
                };
                target.depth += 1;
            }
            _ => {
                return Err(PickleError::Malformed {
                    pos: op_pos,
                    message: "APPEND on a non-list value".into(),
                })
            }
        }
        target.depth = target.depth.max(child_depth + 1);
        if target.depth > max_depth {
            return Err(PickleError::Limit {
                pos: op_pos,
                message: format!("nesting deeper than {max_depth}"),
            });
        }
        self.refresh_memo_of_top()
    }

    fn reduce(&mut self, callable: Slot, args: Slot) -> Result<Slot, PickleError> {
        let depth = callable.depth.max(args.depth);
        // OrderedDict() is the container of every PyTorch state_dict: make it a plain (ordered) Dict.
        if callable.v.as_global() == Some(("collections", "OrderedDict"))
            && matches!(&args.v, Value::Tuple(a) if a.is_empty())
        {
            return Ok(Slot::new(Value::Dict(Vec::new())));
        }
        self.container(
            Value::Reduce {
                callable: Box::new(callable.v),
                args: Box::new(args.v),
            },
            depth,
        )
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v.v);
                }
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return self.malformed(format!("unsupported protocol {p}"));
                    }
                }
                0x95 => {
                    // FRAME: framing is only a buffering hint; the opcodes continue inline.
                    let n = self.len64()?;
                    if n > self.data.len() - self.pos {
                        return Err(PickleError::Truncated(self.data.len()));
                    }
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let size = approx_size(&self.top()?.v);
                    self.charge(size)?;
                    let t = self.top()?.clone();
                    self.stack.push(Slot {
                        memo: Vec::new(),
                        ..t
                    });
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' => {
                    let s = self.line_str()?;
                    let v = match s {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => match long_from_decimal(s) {
                            Some(v) => v,
                            None => return self.malformed(format!("bad INT argument {s:?}")),
                        },
                    };
                    self.push(v);
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"));
                    self.push(Value::Int(v as i64));
                }
                b'L' => {
                    let s = self.line_str()?;
                    let s = s.strip_suffix('L').unwrap_or(s);
                    match long_from_decimal(s) {
                        Some(v) => self.push(v),
                        None => return self.malformed(format!("bad LONG argument {s:?}")),
                    }
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(long_from_le(b));
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    if n < 0 {
                        return self.malformed("negative LONG4 length");
                    }
                    let b = self.take(n as usize)?;
                    self.push(long_from_le(b));
                }
                b'F' => {
                    let s = self.line_str()?;
                    match s.trim().parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f)),
                        Err(_) => return self.malformed(format!("bad FLOAT argument {s:?}")),
                    }
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(v));
                }
                b'S' => {
                    let l = self.line()?;
                    match unescape_py_string(l) {
                        Some(b) => self.push(Value::Str(latin1(&b))),
                        None => return self.malformed("bad STRING argument"),
                    }
                }
                b'T' => {
                    let n = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    if n < 0 {
                        return self.malformed("negative BINSTRING length");
                    }
                    let b = self.take(n as usize)?;
                    self.push(Value::Str(latin1(b)));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Str(latin1(b)));
                }
                b'V' => {
                    let l = self.line()?;
                    match raw_unicode_escape(l) {
                        Some(s) => self.push(Value::Str(s)),
                        None => return self.malformed("bad UNICODE argument"),
                    }
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => self.len64()?,
                    };
                    let b = self.take(n)?;
                    // Python's pickle uses 'surrogatepass'; lone surrogates are rare: replace them.
                    self.push(Value::Str(String::from_utf8_lossy(b).into_owned()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len64()?,
                    };
                    let b = self.take(n)?;
                    self.push(Value::Bytes(b.to_vec()));
                }
                0x97 => {
                    return Err(PickleError::Unsupported {
                        name: "NEXT_BUFFER",
                        pos: self.op_pos,
                    })
                }
                0x98 => {
                    // READONLY_BUFFER: no-op on our copies.
                    self.top()?;
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b'}' => self.push(Value::Dict(Vec::new())),
                0x8f => self.push(Value::Reduce {
                    callable: Box::new(Value::Global {
                        module: "builtins".into(),
                        name: "set".into(),
                    }),
                    args: Box::new(Value::Tuple(vec![Value::List(Vec::new())])),
                }),
                b't' | b'l' => {
                    let items = self.pop_mark()?;
                    let d = Self::max_depth(&items);
                    let vals: Vec<Value> = items.into_iter().map(|s| s.v).collect();
                    let v = if op == b't' {
                        Value::Tuple(vals)
                    } else {
                        Value::List(vals)
                    };
                    let s = self.container(v, d)?;
                    self.stack.push(s);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let d = Self::max_depth(&items);
                    let vals: Vec<Value> = items.into_iter().map(|s| s.v).collect();
                    let v = Value::Reduce {
                        callable: Box::new(Value::Global {
                            module: "builtins".into(),
                            name: "frozenset".into(),
                        }),
                        args: Box::new(Value::Tuple(vec![Value::List(vals)])),
                    };
                    let s = self.container(v, d + 2)?;
                    self.stack.push(s);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let d = Self::max_depth(&items);
                    let s =
                        self.container(Value::Tuple(items.into_iter().map(|s| s.v).collect()), d)?;
                    self.stack.push(s);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append_items(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append_items(items)?;
                }
                b'c' => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.v, name.v) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global { module, name })
                        }
                        _ => return self.malformed("STACK_GLOBAL needs two strings"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let s = self.reduce(callable, args)?;
                    self.stack.push(s);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let s = self.reduce(cls, args)?;
                    self.stack.push(s);
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let d = args.depth.max(kwargs.depth) + 1;
                    let a = self.container(Value::Tuple(vec![args.v, kwargs.v]), d)?;
                    let s = self.reduce(cls, a)?;
                    self.stack.push(s);
                }
                b'i' => {
                    let module = self.line_str()?.to_string();
                    let name = self.line_str()?.to_string();
                    let items = self.pop_mark()?;
                    let d = Self::max_depth(&items);
                    let args =
                        self.container(Value::Tuple(items.into_iter().map(|s| s.v).collect()), d)?;
                    let s = self.reduce(Slot::new(Value::Global { module, name }), args)?;
                    self.stack.push(s);
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.malformed("OBJ without a class");
                    }
                    let cls = items.remove(0);
                    let d = Self::max_depth(&items);
                    let args =
                        self.container(Value::Tuple(items.into_iter().map(|s| s.v).collect()), d)?;
                    let s = self.reduce(cls, args)?;
                    self.stack.push(s);
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    let d = obj.depth.max(state.depth);
                    let memo = obj.memo.clone();
                    let mut s = self.container(
                        Value::Build {
                            obj: Box::new(obj.v),
                            state: Box::new(state.v),
                        },
                        d,
                    )?;
                    // BUILD mutates the object in place: memo copies of it must see the new state.
                    s.memo = memo;
                    self.stack.push(s);
                    self.refresh_memo_of_top()?;
                }
                b'P' => {
                    let l = self.line()?;
                    self.push(Value::PersistentId(Box::new(Value::Str(latin1(l)))));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.container(Value::PersistentId(Box::new(pid.v)), pid.depth)?;
                    self.stack.push(s);
                }
                b'p' => {
                    let s = self.line_str()?;
                    match s.parse::<u64>() {
                        Ok(k) => self.memo_put(k)?,
                        Err(_) => return self.malformed(format!("bad PUT argument {s:?}")),
                    }
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let s = self.line_str()?;
                    match s.parse::<u64>() {
                        Ok(k) => self.memo_get(k)?,
                        Err(_) => return self.malformed(format!("bad GET argument {s:?}")),
                    }
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?;
                }
                0x82..=0x84 => {
                    return Err(PickleError::Unsupported {
                        name: "EXT1/EXT2/EXT4",
                        pos: self.op_pos,
                    })
                }
                other => {
                    return Err(PickleError::UnknownOpcode {
                        op: other,
                        pos: self.op_pos,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_longs() {
        assert_eq!(long_from_decimal("-5"), Some(Value::Int(-5)));
        // 2^64 = 0x1_0000_0000_0000_0000 → 9 magnitude bytes + sign byte.
        assert_eq!(
            long_from_decimal("18446744073709551616"),
            Some(Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(long_from_le(&[0xff]), Value::Int(-1));
        assert_eq!(long_from_le(&[0xff, 0x00]), Value::Int(255));
    }

    #[test]
    fn string_escapes() {
        assert_eq!(unescape_py_string(b"'a\\x41\\n\\''").unwrap(), b"aA\n'");
        assert_eq!(raw_unicode_escape(b"caf\\u00e9").unwrap(), "café");
    }
}
