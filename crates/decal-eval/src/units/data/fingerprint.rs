//! The identity of a dataset directory: SHA-256 over its files' sorted relative paths, sizes and *contents*.
//!
//! A unit's id covers the fingerprint of the data it reads, so the fingerprint must change exactly when the
//! data does. Modification times are not part of it: a copy, a restore from backup or a re-mounted
//! read-only share gives the same files new times, and an interrupted study must still resume from its
//! finished units there (it did not, before: every new mount of the shared datasets re-planned every unit).
//!
//! Hashing every byte of a large dataset at each plan would be slow, so the per-file hashes are cached,
//! keyed by the file's size and modification time: a file whose size and time are unchanged is not read
//! again; any other file is read and hashed (in parallel). The cache lives in
//! `$DECAL_CACHE/fingerprints/` (else `$XDG_CACHE_HOME/decal/…`, else `~/.cache/decal/…`), one JSON
//! file per directory; a missing, unreadable, damaged, stale or unwritable cache only costs the
//! re-hashing (an entry is used only while the file's size and time are the recorded ones).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Symbolic links are followed at most this many directory levels deep.
const MAX_DEPTH: usize = 16;

/// The cache file format version.
const CACHE_VERSION: u32 = 1;

/// One file below the directory.
struct Entry {
    rel: String,
    path: PathBuf,
    size: u64,
    mtime_ns: u64,
}

/// A file's cached hash: valid while its size and modification time are these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    size: u64,
    mtime_ns: u64,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    dir: String,
    files: BTreeMap<String, Cached>,
}

/// The fingerprint of `dir` (a directory, or a single file), using and refreshing the default cache.
pub(super) fn fingerprint(dir: &Path) -> Result<String, String> {
    fingerprint_with_cache(dir, default_cache_root().as_deref())
}

/// The fingerprint of `dir`; per-file hashes are cached below `cache_root` (`None`: no cache).
pub(super) fn fingerprint_with_cache(
    dir: &Path,
    cache_root: Option<&Path>,
) -> Result<String, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries = Vec::new();
    if meta.is_dir() {
        walk(dir, "", 0, &mut entries)?;
    } else {
        entries.push(entry(String::new(), dir.to_path_buf(), &meta));
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));

    let cache_path = cache_root.map(|root| cache_file(root, dir, DIR_KEY));
    let cached = cache_path.as_deref().map(read_cache).unwrap_or_default();
    let mut hashes: Vec<Option<String>> = entries
        .iter()
        .map(|e| {
            cached
                .get(&e.rel)
                .filter(|c| c.size == e.size && c.mtime_ns == e.mtime_ns)
                .map(|c| c.sha256.clone())
        })
        .collect();
    let missing: Vec<usize> = (0..entries.len())
        .filter(|&i| hashes[i].is_none())
        .collect();
    for (i, hash) in hash_files(&entries, &missing)? {
        hashes[i] = Some(hash);
    }

    let mut text = String::new();
    let mut files = BTreeMap::new();
    for (e, h) in entries.iter().zip(hashes) {
        let sha256 = h.unwrap_or_default();
        text.push_str(&format!("{}\t{}\t{sha256}\n", e.rel, e.size));
        files.insert(
            e.rel.clone(),
            Cached {
                size: e.size,
                mtime_ns: e.mtime_ns,
                sha256,
            },
        );
    }
    if let Some(path) = cache_path {
        if !missing.is_empty() || files.len() != cached.len() {
            write_cache(&path, dir, files);
        }
    }
    Ok(decal_core::sha256_bytes(text.as_bytes()))
}

/// SHA-256 of one file's bytes, from the same cache when the file's size and modification time are the
/// recorded ones (corruption files of ~150 MB, feature files of gigabytes are checked at every plan and by
/// every unit process that reads them).
pub(crate) fn sha256_cached(path: &Path) -> Result<String, String> {
    sha256_with_cache(path, default_cache_root().as_deref())
}

/// [`sha256_cached`] with the cache below `cache_root` (`None`: no cache).
pub(crate) fn sha256_with_cache(path: &Path, cache_root: Option<&Path>) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        return Err(format!("{}: is a directory, not a file", path.display()));
    }
    let e = entry(String::new(), path.to_path_buf(), &meta);
    // One cache file per file (kept apart from the directory caches by its key's prefix).
    let cache_path = cache_root.map(|root| cache_file(root, path, FILE_KEY));
    let cached = cache_path.as_deref().map(read_cache).unwrap_or_default();
    if let Some(c) = cached.get("") {
        if c.size == e.size && c.mtime_ns == e.mtime_ns {
            return Ok(c.sha256.clone());
        }
    }
    let sha256 = decal_core::sha256_file(path).map_err(|err| err.to_string())?;
    if let Some(cache_path) = cache_path {
        let cached = Cached {
            size: e.size,
            mtime_ns: e.mtime_ns,
            sha256: sha256.clone(),
        };
        write_cache(&cache_path, path, BTreeMap::from([(String::new(), cached)]));
    }
    Ok(sha256)
}

/// `$DECAL_CACHE/fingerprints`, else `$XDG_CACHE_HOME/decal/fingerprints`, else
/// `$HOME/.cache/decal/fingerprints`; `None` when none of them is set.
fn default_cache_root() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = var("DECAL_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("decal")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("decal")))?;
    Some(base.join("fingerprints"))
}

/// Cache-file key prefix of a directory's fingerprint cache.
const DIR_KEY: &str = "";
/// Cache-file key prefix of a single file's hash cache.
const FILE_KEY: &str = "file:";

/// The cache file of `path` (a directory: `DIR_KEY`; a single file: `FILE_KEY`): named by the SHA-256 of
/// the prefix and its canonical path.
fn cache_file(root: &Path, path: &Path, prefix: &str) -> PathBuf {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let key =
        decal_core::sha256_bytes(format!("{prefix}{}", canonical.to_string_lossy()).as_bytes());
    root.join(format!("{key}.json"))
}

/// Writes the cache of `path` atomically. A cache that cannot be written costs only the re-hashing next
/// time, so a failure is ignored.
fn write_cache(cache_path: &Path, path: &Path, files: BTreeMap<String, Cached>) {
    let file = CacheFile {
        version: CACHE_VERSION,
        dir: path.display().to_string(),
        files,
    };
    let _ = decal_core::write_json_atomic(cache_path, &file);
}

/// The cached entries, or none when the cache is missing, damaged or of another version.
fn read_cache(path: &Path) -> BTreeMap<String, Cached> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
        .filter(|c| c.version == CACHE_VERSION)
        .map(|c| c.files)
        .unwrap_or_default()
}

/// Hashes `entries[i]` for every `i` in `which`, on a few threads (reading many small files is bound by
/// system calls more than by the hashing).
fn hash_files(entries: &[Entry], which: &[usize]) -> Result<Vec<(usize, String)>, String> {
    if which.is_empty() {
        return Ok(Vec::new());
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .min(which.len());
    let chunk = which.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = which
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&i| {
                            decal_core::sha256_file(&entries[i].path)
                                .map(|h| (i, h))
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(which.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| "a fingerprint thread panicked".to_string())??,
            );
        }
        Ok(out)
    })
}

fn entry(rel: String, path: PathBuf, meta: &std::fs::Metadata) -> Entry {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Entry {
        rel,
        path,
        size: meta.len(),
        mtime_ns,
    }
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut Vec<Entry>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: more than {MAX_DEPTH} directory levels (a link cycle?)",
            dir.display()
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for item in entries {
        let item = item.map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = item.path();
        let name = item.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(&path, &rel, depth + 1, out)?;
        } else {
            out.push(entry(rel, path, &meta));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn set_mtime(path: &Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("train/cat")).unwrap();
        std::fs::write(dir.path().join("train/cat/1.png"), b"one").unwrap();
        std::fs::write(dir.path().join("train/cat/2.png"), b"two").unwrap();
        std::fs::write(dir.path().join("labels.txt"), b"cat\n").unwrap();
        dir
    }

    #[test]
    fn new_modification_times_keep_the_fingerprint_with_or_without_a_cache() {
        let data = tree();
        let cache = tempfile::tempdir().unwrap();
        let before = fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        assert_eq!(fingerprint_with_cache(data.path(), None).unwrap(), before);
        let later = SystemTime::now() + Duration::from_secs(3600);
        for f in ["train/cat/1.png", "train/cat/2.png", "labels.txt"] {
            set_mtime(&data.path().join(f), later);
        }
        assert_eq!(
            fingerprint_with_cache(data.path(), Some(cache.path())).unwrap(),
            before
        );
        assert_eq!(fingerprint_with_cache(data.path(), None).unwrap(), before);
    }

    #[test]
    fn changed_contents_of_the_same_size_change_the_fingerprint_even_with_a_cache() {
        let data = tree();
        let cache = tempfile::tempdir().unwrap();
        let before = fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        let file = data.path().join("train/cat/1.png");
        std::fs::write(&file, b"ONE").unwrap();
        set_mtime(&file, SystemTime::now() + Duration::from_secs(60));
        let after = fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        assert_ne!(after, before);
        assert_eq!(fingerprint_with_cache(data.path(), None).unwrap(), after);
    }

    #[test]
    fn added_removed_and_renamed_files_change_the_fingerprint() {
        let data = tree();
        let cache = tempfile::tempdir().unwrap();
        let base = fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        std::fs::write(data.path().join("train/cat/3.png"), b"three").unwrap();
        let added = fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        assert_ne!(added, base);
        std::fs::remove_file(data.path().join("train/cat/3.png")).unwrap();
        assert_eq!(
            fingerprint_with_cache(data.path(), Some(cache.path())).unwrap(),
            base
        );
        std::fs::rename(
            data.path().join("train/cat/2.png"),
            data.path().join("train/cat/9.png"),
        )
        .unwrap();
        assert_ne!(
            fingerprint_with_cache(data.path(), Some(cache.path())).unwrap(),
            base
        );
    }

    #[test]
    fn a_damaged_or_lying_cache_cannot_change_the_fingerprint() {
        let data = tree();
        let cache = tempfile::tempdir().unwrap();
        let truth = fingerprint_with_cache(data.path(), None).unwrap();
        fingerprint_with_cache(data.path(), Some(cache.path())).unwrap();
        let file = cache_file(cache.path(), data.path(), DIR_KEY);
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(
            fingerprint_with_cache(data.path(), Some(cache.path())).unwrap(),
            truth
        );
        // An entry whose size or time differs from the file's is not used.
        let mut c: CacheFile = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for v in c.files.values_mut() {
            v.sha256 = "0".repeat(64);
            v.mtime_ns += 1;
        }
        std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(
            fingerprint_with_cache(data.path(), Some(cache.path())).unwrap(),
            truth
        );
        // An unwritable cache location is not an error.
        let blocker = cache.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        assert_eq!(
            fingerprint_with_cache(data.path(), Some(&blocker.join("below"))).unwrap(),
            truth
        );
    }

    #[test]
    fn a_cached_file_hash_is_its_sha256_and_follows_its_contents() {
        let data = tree();
        let cache = tempfile::tempdir().unwrap();
        let file = data.path().join("labels.txt");
        let truth = decal_core::sha256_file(&file).unwrap();
        assert_eq!(sha256_with_cache(&file, Some(cache.path())).unwrap(), truth);
        // From the cache (a new time re-hashes; the bytes decide).
        assert_eq!(sha256_with_cache(&file, Some(cache.path())).unwrap(), truth);
        set_mtime(&file, SystemTime::now() + Duration::from_secs(60));
        assert_eq!(sha256_with_cache(&file, Some(cache.path())).unwrap(), truth);
        std::fs::write(&file, b"dog\n").unwrap();
        set_mtime(&file, SystemTime::now() + Duration::from_secs(120));
        assert_eq!(
            sha256_with_cache(&file, Some(cache.path())).unwrap(),
            decal_core::sha256_file(&file).unwrap()
        );
        assert!(sha256_with_cache(data.path(), None)
            .unwrap_err()
            .contains("directory"));
    }

    #[test]
    fn a_single_file_is_fingerprinted_by_its_contents() {
        let data = tree();
        let file = data.path().join("labels.txt");
        let a = fingerprint_with_cache(&file, None).unwrap();
        set_mtime(&file, SystemTime::now() + Duration::from_secs(60));
        assert_eq!(fingerprint_with_cache(&file, None).unwrap(), a);
        assert!(fingerprint_with_cache(&data.path().join("absent"), None)
            .unwrap_err()
            .contains("absent"));
    }
}
