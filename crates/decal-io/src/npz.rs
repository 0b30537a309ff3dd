//! NumPy `.npz` archives (`np.savez` = stored, `np.savez_compressed` = deflated): a zip file whose members are
//! `.npy` files named `<key>.npy`. Reading returns `(key, array)` pairs in archive order; writing is atomic.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::IoError;
use crate::npy::{self, NpyArray};

/// Reads every `.npy` member of an `.npz` archive; keys have the `.npy` suffix removed (as `np.load` does).
/// Members that are not `.npy` files are an error (numpy would also refuse to load them as arrays).
pub fn read(path: &Path) -> Result<Vec<(String, NpyArray)>, IoError> {
    let file = std::fs::File::open(path).map_err(|source| IoError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let archive_len = file
        .metadata()
        .map_err(|source| IoError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    read_from(std::io::BufReader::new(file), archive_len, path)
}

/// As [`read`] on the bytes of an archive (`name` is used in messages), e.g. for fuzzing.
pub fn from_bytes(bytes: &[u8], name: &Path) -> Result<Vec<(String, NpyArray)>, IoError> {
    read_from(std::io::Cursor::new(bytes), bytes.len() as u64, name)
}

fn read_from(
    reader: impl std::io::Read + std::io::Seek,
    archive_len: u64,
    path: &Path,
) -> Result<Vec<(String, NpyArray)>, IoError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|e| IoError::format(path, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut member = archive
            .by_index(i)
            .map_err(|e| IoError::format(path, format!("cannot open archive member {i}: {e}")))?;
        if member.is_dir() {
            continue;
        }
        let name = member.name().to_string();
        let member_path = PathBuf::from(format!("{}:{name}", path.display()));
        let key = name
            .strip_suffix(".npy")
            .ok_or_else(|| IoError::format(&member_path, "archive member is not a .npy file"))?;
        check_member_sizes(&member, archive_len, &member_path)?;
        let size = member.size();
        let bytes = decal_core::bounded::read_exact_declared(&mut member, size)
            .map_err(|e| IoError::format(&member_path, format!("cannot decompress member: {e}")))?;
        out.push((key.to_string(), npy::from_bytes(&bytes, &member_path)?));
    }
    Ok(out)
}

/// Checks a member's declared sizes against what the archive can hold before anything is read: the
/// compressed size must fit in the archive, a stored member's size must equal it, and a deflated member
/// cannot expand by more than deflate's maximum ratio ([`decal_core::bounded::deflate_bound`]).
fn check_member_sizes(
    member: &zip::read::ZipFile<'_>,
    archive_len: u64,
    member_path: &Path,
) -> Result<(), IoError> {
    use decal_core::bounded::{member_size_problem, Packing};
    let (size, packed) = (member.size(), member.compressed_size());
    let problem = match member.compression() {
        zip::CompressionMethod::Stored => {
            member_size_problem(size, packed, Packing::Stored, archive_len)
        }
        zip::CompressionMethod::Deflated => {
            member_size_problem(size, packed, Packing::Deflated, archive_len)
        }
        other => Some(format!("unsupported compression method {other}")),
    };
    match problem {
        Some(p) => Err(IoError::format(
            member_path,
            format!("corrupt archive member: {p}"),
        )),
        None => Ok(()),
    }
}

/// Reads one array by key from an `.npz` archive; the error lists the available keys when it is missing.
pub fn read_key(path: &Path, key: &str) -> Result<NpyArray, IoError> {
    let arrays = read(path)?;
    let keys: Vec<String> = arrays.iter().map(|(k, _)| k.clone()).collect();
    arrays
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, a)| a)
        .ok_or_else(|| {
            IoError::format(
                path,
                format!(
                    "no array named '{key}' (archive holds: {})",
                    keys.join(", ")
                ),
            )
        })
}

/// Writes arrays into an `.npz` archive atomically; `compressed` selects deflate (`np.savez_compressed`)
/// instead of stored (`np.savez`). Keys must be unique and non-empty.
pub fn write(path: &Path, arrays: &[(String, NpyArray)], compressed: bool) -> Result<(), IoError> {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in arrays {
        if key.is_empty() || !seen.insert(key.as_str()) {
            return Err(IoError::value(
                path.display().to_string(),
                format!("npz keys must be unique and non-empty (got '{key}')"),
            ));
        }
    }
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let method = if compressed {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::FileOptions::default()
            .compression_method(method)
            .large_file(true);
        let zerr = |e: zip::result::ZipError| {
            IoError::format(path, format!("cannot build zip archive: {e}"))
        };
        for (key, array) in arrays {
            let bytes = npy::to_bytes(array).map_err(|e| match e {
                IoError::Value { message, .. } => IoError::Value {
                    what: format!("{}:{key}.npy", path.display()),
                    message,
                },
                other => other,
            })?;
            zip.start_file(format!("{key}.npy"), options)
                .map_err(zerr)?;
            zip.write_all(&bytes).map_err(|source| IoError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        zip.finish().map_err(zerr)?;
    }
    decal_core::write_atomic(path, &cursor.into_inner())?;
    Ok(())
}
