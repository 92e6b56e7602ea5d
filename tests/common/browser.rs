// Headless Chromium (Debian `chromium`) for the report tests: dump the DOM, take a
// screenshot, print to PDF. `Browser::find` skips (None) only when chromium is missing and
// LIFEBOAT_REQUIRE_BROWSER is unset; CI sets it (scripts/setup.sh), so there it fails instead.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Browser {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    pub fn find() -> Option<Browser> {
        let bin = std::env::var_os("LIFEBOAT_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| on_path("chromium"))
            .or_else(|| on_path("chromium-browser"));
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("LIFEBOAT_REQUIRE_BROWSER").is_none(),
                "LIFEBOAT_REQUIRE_BROWSER is set but no chromium was found: run scripts/setup.sh (apt chromium) or set LIFEBOAT_CHROMIUM"
            );
            eprintln!(
                "SKIPPED: no chromium on PATH (install Debian `chromium`, see scripts/setup.sh; set LIFEBOAT_REQUIRE_BROWSER=1 to make this a failure)"
            );
            return None;
        };
        Some(Browser {
            bin,
            profile: tempfile::Builder::new()
                .prefix("lifeboat-chromium-")
                .tempdir()
                .expect("chromium profile dir"),
        })
    }

    /// Runs chromium headless on `file` with `args`; returns stdout. Fails after 90 s.
    fn run(&self, file: &Path, args: &[String]) -> String {
        let url = format!("file://{}", file.display());
        let mut child = Command::new(&self.bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(args)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait chromium") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {args:?} {url} did not finish in 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = reader.join().expect("stdout reader");
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        assert!(
            status.success(),
            "chromium {args:?} failed: {status}\n{err}"
        );
        out
    }

    /// The DOM after load, serialized.
    pub fn dump_dom(&self, file: &Path) -> String {
        self.run(file, &["--dump-dom".into()])
    }

    /// A PNG screenshot of `width`×`height`.
    pub fn screenshot(&self, file: &Path, png: &Path, width: u32, height: u32) {
        self.screenshot_with(file, png, width, height, &[]);
    }

    /// A screenshot with more chromium flags (`--force-dark-mode`: prefers-color-scheme dark).
    pub fn screenshot_with(
        &self,
        file: &Path,
        png: &Path,
        width: u32,
        height: u32,
        extra: &[&str],
    ) {
        let mut args = vec![
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let _ = std::fs::remove_file(png);
        self.run(file, &args);
        assert!(png.is_file(), "chromium wrote no screenshot");
    }

    pub fn print_to_pdf(&self, file: &Path, pdf: &Path) {
        self.run(
            file,
            &[
                format!("--print-to-pdf={}", pdf.display()),
                "--no-pdf-header-footer".into(),
            ],
        );
        let bytes = std::fs::read(pdf).expect("read pdf");
        assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
        assert!(
            bytes.len() > 2000,
            "PDF suspiciously small: {} bytes",
            bytes.len()
        );
    }
}

/// A loopback HTTP listener recording the request line of every connection (answering 404),
/// to prove a page fetched nothing.
pub struct Probe {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    pub fn start() -> Probe {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind probe");
        let port = listener.local_addr().expect("probe addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]);
                seen.lock().unwrap().push(
                    text.lines()
                        .next()
                        .unwrap_or("(connection, no request)")
                        .to_string(),
                );
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Probe { port, requests }
    }

    pub fn seen(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The pixels of an 8-bit RGB or RGBA PNG (non-interlaced, as Chromium writes them):
/// (width, height, bytes per pixel, unfiltered rows).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut pos = 8;
    let (mut w, mut h, mut bpp) = (0u32, 0u32, 0usize);
    let mut idat = Vec::new();
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap());
                h = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(data[8], 8, "bit depth");
                bpp = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("PNG colour type {t} not handled"),
                };
                assert_eq!(data[12], 0, "interlaced PNG not handled");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        pos += 12 + len;
    }
    let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("inflate PNG");
    let stride = w as usize * bpp;
    let mut out = vec![0u8; stride * h as usize];
    for y in 0..h as usize {
        let filter = raw[y * (stride + 1)];
        let line = &raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)];
        for x in 0..stride {
            let a = if x >= bpp {
                out[y * stride + x - bpp]
            } else {
                0
            };
            let b = if y > 0 { out[(y - 1) * stride + x] } else { 0 };
            let c = if x >= bpp && y > 0 {
                out[(y - 1) * stride + x - bpp]
            } else {
                0
            };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            out[y * stride + x] = line[x].wrapping_add(pred);
        }
    }
    (w, h, bpp, out)
}

/// How many distinct colours a PNG has, and the share of its most common one.
pub fn colour_stats(bytes: &[u8]) -> (usize, f64) {
    let (n, share, _) = colours(bytes);
    (n, share)
}

/// Distinct colours, the share of the most common one, and that colour (RGB): the background.
pub fn colours(bytes: &[u8]) -> (usize, f64, [u8; 3]) {
    let (w, h, bpp, px) = decode_png(bytes);
    let mut counts = std::collections::HashMap::new();
    for p in px.chunks(bpp) {
        *counts.entry([p[0], p[1], p[2]]).or_insert(0usize) += 1;
    }
    let (top, n) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(c, n)| (*c, *n))
        .unwrap_or(([0; 3], 0));
    (counts.len(), n as f64 / (f64::from(w) * f64::from(h)), top)
}
