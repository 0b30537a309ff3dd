//! The pickle machine's budget bounds *memory*: tiny pickles that would grow exponentially (`DUP` + `APPEND`)
//! or quadratically (a list memoised many times, then appended to) or that declare huge lengths are refused
//! with a one-line limit error and less than 250 MiB of peak memory (each case runs in a child process
//! under `ulimit -v`, see `hostile/mod.rs`; file names are added by the callers, e.g. decal-data's CIFAR
//! reader and decal-models' importer, whose own tests check them).

// The child-process harness (peak RSS, one-line error) is shared with decal-io's hostile_sizes tests.
#[path = "../../decal-io/tests/hostile/mod.rs"]
mod hostile;

use hostile::assert_refused;

fn parse(b: &[u8]) -> Result<(), String> {
    decal_pickle::parse(b)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn dup_append_doubling_bomb() {
    assert_refused(
        "dup_append_doubling_bomb",
        true,
        &["pickle exceeds a limit", "bytes of copies"],
        || {
            // [] then 48 × (DUP, APPEND): the list doubles each time (2^48 nodes from 99 bytes).
            let mut b = b"]".to_vec();
            for _ in 0..48 {
                b.extend(b"2a");
            }
            b.push(b'.');
            parse(&b)
        },
    );
}

#[test]
fn memoised_list_refresh_bomb() {
    assert_refused(
        "memoised_list_refresh_bomb",
        true,
        &["pickle exceeds a limit", "bytes of copies"],
        || {
            // One list memoised under 20,000 keys, then 20,000 appends: every append refreshes every copy
            // (4·10^8 values, ~13 GB, from a 60 KB file).
            let mut b = b"\x80\x04]".to_vec();
            b.extend(std::iter::repeat_n(0x94u8, 20_000));
            for _ in 0..20_000 {
                b.extend(b"Na");
            }
            b.push(b'.');
            parse(&b)
        },
    );
}

#[test]
fn memo_get_amplification() {
    assert_refused(
        "memo_get_amplification",
        true,
        &["pickle exceeds a limit", "bytes of copies"],
        || {
            // A 64 KiB string fetched from the memo 50,000 times into one list (3.2 GB from 164 KB).
            let mut b = b"\x80\x04\x8d".to_vec();
            b.extend((1u64 << 16).to_le_bytes());
            b.extend(vec![b'x'; 1 << 16]);
            b.extend(b"\x94(");
            for _ in 0..50_000 {
                b.extend(b"h\x00");
            }
            b.extend(b"l.");
            parse(&b)
        },
    );
}

#[test]
fn binbytes8_declaring_a_huge_length() {
    assert_refused(
        "binbytes8_declaring_a_huge_length",
        true,
        &[
            "pickle exceeds a limit",
            "length 4611686018427387904 exceeds the 20 input bytes",
        ],
        || {
            let mut b = b"\x80\x04\x8e".to_vec();
            b.extend((1u64 << 62).to_le_bytes());
            b.extend(b"abcdefgh.");
            parse(&b)
        },
    );
}

#[test]
fn long4_declaring_a_huge_length() {
    assert_refused(
        "long4_declaring_a_huge_length",
        true,
        &["pickle exceeds a limit", "length 2147483647"],
        || {
            let mut b = b"\x80\x04\x8b".to_vec();
            b.extend(i32::MAX.to_le_bytes());
            b.extend(b"abcdefgh.");
            parse(&b)
        },
    );
}
