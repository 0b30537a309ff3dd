//! Reading data whose size a file declares, without trusting the declaration.
//!
//! Invariant (ARCHITECTURE.md, "Invariants"): no allocation follows a size read from a file before that size is
//! checked against what the file can actually hold. For a compressed stream the bound is physical: deflate
//! (zlib, gzip, zip) cannot expand data by more than [`MAX_DEFLATE_RATIO`], so a member that declares more
//! than `ratio × compressed bytes` is corrupt or hostile and is refused before inflating anything; and even a
//! plausible declaration only ever grows the output buffer as bytes actually arrive.

use std::io::Read;

/// The largest expansion deflate can achieve: a run-length of 258 bytes per 2-bit code gives at most
/// 1032:1 (zlib's documented limit); a little slack for headers is added by [`deflate_bound`].
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// The most bytes a deflate stream of `compressed` bytes can inflate to (with 64 KiB of slack for headers
/// and tiny streams).
pub fn deflate_bound(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_DEFLATE_RATIO)
        .saturating_add(64 * 1024)
}

/// How an archive member is compressed, for [`member_size_problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Stored as is: the uncompressed size must equal the compressed size.
    Stored,
    /// Deflated: the uncompressed size is at most [`deflate_bound`] of the compressed size.
    Deflated,
}

/// Checks the sizes an archive member (zip / zip64 central directory) declares against what the archive can
/// hold, before anything is read: `None` when plausible, otherwise what is wrong, in words.
pub fn member_size_problem(
    size: u64,
    packed: u64,
    packing: Packing,
    archive_len: u64,
) -> Option<String> {
    if packed > archive_len {
        return Some(format!(
            "declares {packed} compressed bytes but the archive has {archive_len}"
        ));
    }
    match packing {
        Packing::Stored if size != packed => Some(format!(
            "stored member declares {size} bytes but holds {packed}"
        )),
        Packing::Deflated if size > deflate_bound(packed) => Some(format!(
            "declares {size} uncompressed bytes, more than {packed} deflated bytes can hold"
        )),
        _ => None,
    }
}

/// How much of a declared size is reserved up front: larger outputs grow as data arrives.
const INITIAL_RESERVE: u64 = 16 << 20;

/// Reads exactly `declared` bytes from `r`, growing the buffer only as data arrives (at most
/// [`INITIAL_RESERVE`] is reserved up front, whatever the declaration). Fails with
/// [`std::io::ErrorKind::UnexpectedEof`] when the stream ends early, and with
/// [`std::io::ErrorKind::InvalidData`] when it holds more than `declared` bytes.
pub fn read_exact_declared(mut r: impl Read, declared: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(declared.min(INITIAL_RESERVE) as usize);
    let got = (&mut r).take(declared).read_to_end(&mut out)? as u64;
    if got < declared {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("stream ends after {got} of the {declared} bytes it declares"),
        ));
    }
    let mut probe = [0u8; 1];
    loop {
        match r.read(&mut probe) {
            Ok(0) => return Ok(out),
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("stream holds more than the {declared} bytes it declares"),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Checks a declared element count against a limit, with the product computed overflow-free:
/// `Some(count × item_size)` in bytes when it fits in `limit` bytes, `None` otherwise.
pub fn checked_bytes(dims: &[u64], item_size: u64, limit: u64) -> Option<u64> {
    let n = dims
        .iter()
        .try_fold(item_size, |acc, &d| acc.checked_mul(d))?;
    (n <= limit).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_short_and_long_streams() {
        assert_eq!(read_exact_declared(&b"abc"[..], 3).unwrap(), b"abc");
        let e = read_exact_declared(&b"ab"[..], 3).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("after 2 of the 3"), "{e}");
        let e = read_exact_declared(&b"abcd"[..], 3).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_huge_declaration_reserves_little() {
        // 2^62 declared bytes but a 3-byte stream: an error, and no attempt to reserve the declaration.
        let e = read_exact_declared(&b"abc"[..], 1 << 62).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn member_sizes() {
        assert_eq!(member_size_problem(10, 10, Packing::Stored, 100), None);
        assert!(member_size_problem(11, 10, Packing::Stored, 100).is_some());
        assert!(member_size_problem(10, 101, Packing::Stored, 100).is_some());
        assert_eq!(member_size_problem(1000, 2, Packing::Deflated, 100), None);
        assert!(member_size_problem(1 << 40, 2, Packing::Deflated, 100).is_some());
    }

    #[test]
    fn products_do_not_overflow() {
        assert_eq!(checked_bytes(&[2, 3], 4, 100), Some(24));
        assert_eq!(checked_bytes(&[2, 3], 4, 23), None);
        assert_eq!(checked_bytes(&[u64::MAX, 2], 1, u64::MAX), None);
        assert_eq!(deflate_bound(u64::MAX), u64::MAX);
        assert_eq!(deflate_bound(1000), 1_032_000 + 65_536);
    }
}
