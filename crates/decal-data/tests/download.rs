//! The downloader against a local HTTP server on 127.0.0.1 started by the test: a normal transfer, a
//! corrupted one (checksum mismatch → error, nothing kept under the final name), an interrupted one
//! (the server drops the connection mid-body → resumed with `Range`), an unreachable server (offline
//! message naming the file to place), and archive extraction.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decal_data::download::{extract, fetch, md5_bytes, DownloadOptions, Extract, Resource};

fn body() -> Vec<u8> {
    (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

/// Serves at most `max_conn` connections, then stops. Returns the base URL and a request counter.
fn serve(max_conn: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut flaky_served = false;
        for stream in listener.incoming().take(max_conn) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.fetch_add(1, Ordering::SeqCst);
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range_from = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range_from = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
            let mut data = body();
            if path == "/corrupt.bin" {
                data[1000] ^= 0xff;
            }
            if path == "/missing.bin" {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let from = range_from.unwrap_or(0);
            let status = if from > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let rest = &data[from..];
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
                rest.len(),
                if from > 0 {
                    format!(
                        "Content-Range: bytes {from}-{}/{}\r\n",
                        data.len() - 1,
                        data.len()
                    )
                } else {
                    String::new()
                }
            );
            let _ = s.write_all(head.as_bytes());
            if path == "/flaky.bin" && !flaky_served {
                // Drop the connection after 70,000 body bytes.
                flaky_served = true;
                let _ = s.write_all(&rest[..70_000]);
                let _ = s.flush();
                let _ = s.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let _ = s.write_all(rest);
        }
    });
    (base, count)
}

fn opts() -> DownloadOptions {
    DownloadOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
        retries: 3,
        progress: false,
    }
}

fn resource(base: &str, path: &str, md5: &str) -> Resource {
    Resource {
        urls: vec![format!("{base}{path}")],
        filename: "file.bin".into(),
        md5: md5.into(),
        extract: Extract::None,
    }
}

#[test]
fn normal_download_is_verified_and_not_repeated() {
    let (base, count) = serve(10);
    let dir = tempfile::tempdir().unwrap();
    let r = resource(&base, "/good.bin", &md5_bytes(&body()));
    let p = fetch(&r, dir.path(), &opts()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), body());
    assert_eq!(count.load(Ordering::SeqCst), 1);
    fetch(&r, dir.path(), &opts()).unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "a verified file is not fetched again"
    );
}

#[test]
fn corrupted_transfer_is_an_error_and_not_kept() {
    let (base, _) = serve(10);
    let dir = tempfile::tempdir().unwrap();
    let r = resource(&base, "/corrupt.bin", &md5_bytes(&body()));
    let e = fetch(&r, dir.path(), &opts()).unwrap_err().to_string();
    assert!(
        e.contains("file.bin") && e.contains("md5 checksum mismatch"),
        "{e}"
    );
    assert!(!dir.path().join("file.bin").exists());
    assert!(!dir.path().join("file.bin.part").exists());
}

#[test]
fn interrupted_transfer_resumes_with_range() {
    let (base, count) = serve(10);
    let dir = tempfile::tempdir().unwrap();
    let r = resource(&base, "/flaky.bin", &md5_bytes(&body()));
    let p = fetch(&r, dir.path(), &opts()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), body());
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "one dropped transfer, one resumed with Range"
    );
}

#[test]
fn offline_and_http_errors_say_what_to_place_where() {
    // Port 1 on loopback: nothing listens there.
    let dir = tempfile::tempdir().unwrap();
    let r = Resource {
        urls: vec!["http://127.0.0.1:1/x.tar.gz".into()],
        filename: "x.tar.gz".into(),
        md5: "00".into(),
        extract: Extract::None,
    };
    let e = fetch(&r, dir.path(), &opts()).unwrap_err().to_string();
    assert!(
        e.contains("place x.tar.gz (md5 00) in") && e.contains("no network"),
        "{e}"
    );
    let (base, _) = serve(10);
    let e = fetch(&resource(&base, "/missing.bin", "00"), dir.path(), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 404"), "{e}");
    // A wrong file placed by hand is reported, not overwritten.
    std::fs::write(dir.path().join("file.bin"), b"wrong").unwrap();
    let e = fetch(
        &resource(&base, "/good.bin", &md5_bytes(&body())),
        dir.path(),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn tar_gz_and_zip_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("a.tar.gz");
    {
        let enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        );
        let mut t = tar::Builder::new(enc);
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "cifar-10-batches-bin/hello.txt", &b"hello"[..])
            .unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    let out = dir.path().join("out");
    extract(&tgz, Extract::TarGz, &out).unwrap();
    assert_eq!(
        std::fs::read(out.join("cifar-10-batches-bin/hello.txt")).unwrap(),
        b"hello"
    );
    let bad = dir.path().join("bad.tar.gz");
    std::fs::write(&bad, b"not gzip").unwrap();
    let e = extract(&bad, Extract::TarGz, &out).unwrap_err().to_string();
    assert!(e.contains("bad.tar.gz"), "{e}");
}

#[test]
fn every_known_dataset_has_checksummed_resources() {
    for name in [
        "cifar10",
        "cifar10-binary",
        "cifar100",
        "cifar100-binary",
        "svhn",
        "tiny-imagenet",
        "mnist",
        "fashion-mnist",
        "cifar10-c",
        "cifar100-c",
        "CIFAR-10",
    ] {
        let r = decal_data::download::resources(name).unwrap();
        assert!(!r.is_empty());
        assert!(
            r.iter().all(|x| x.md5.len() == 32 && !x.urls.is_empty()),
            "{name}"
        );
    }
    assert!(decal_data::download::resources("imagenet").is_err());
}
