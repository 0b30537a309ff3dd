#!/usr/bin/env python3
"""Builds decal's bundled quickstart dataset from the full Fashion-MNIST and MNIST files.

Usage (from the repository root):
    python3 data/quickstart/make_quickstart.py ../shared/datasets data/quickstart

Takes the FIRST 10,000 Fashion-MNIST training images, the FIRST 2,000 Fashion-MNIST test images and the
FIRST 2,000 MNIST test images (out-of-distribution set), each with its labels, and writes them in the
original IDX format (big-endian header, uint8 payload), gzip-compressed with mtime 0 so the output is
byte-for-byte reproducible. Prints the SHA-256 of every decompressed file (recorded in README.md).
Standard library only.
"""
import gzip
import hashlib
import struct
import sys
from pathlib import Path

SUBSETS = [
    # (source folder, prefix, number of items, destination folder)
    ("fashion-mnist", "train", 10_000, "fashion-mnist"),
    ("fashion-mnist", "t10k", 2_000, "fashion-mnist"),
    ("mnist", "t10k", 2_000, "mnist"),
]


def read_idx(path: Path) -> tuple[bytes, tuple[int, ...], bytes]:
    raw = gzip.decompress(path.read_bytes())
    zero, dtype, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    assert zero == 0 and dtype == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return raw[:4], dims, raw[4 + 4 * ndim :]


def write_idx(path: Path, magic: bytes, dims: tuple[int, ...], payload: bytes) -> str:
    raw = magic + struct.pack(">" + "I" * len(dims), *dims) + payload
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(raw)
    return hashlib.sha256(raw).hexdigest()


def main() -> None:
    src_root, dst_root = Path(sys.argv[1]), Path(sys.argv[2])
    for source, prefix, count, dest in SUBSETS:
        for kind, item_rank in (("images-idx3", 3), ("labels-idx1", 1)):
            name = f"{prefix}-{kind}-ubyte.gz"
            magic, dims, payload = read_idx(src_root / source / name)
            assert len(dims) == item_rank and dims[0] >= count
            item_size = 1
            for d in dims[1:]:
                item_size *= d
            digest = write_idx(dst_root / dest / name, magic, (count,) + dims[1:], payload[: count * item_size])
            print(f"{dest}/{name}: {count} items, sha256(decompressed) = {digest}")


if __name__ == "__main__":
    main()
