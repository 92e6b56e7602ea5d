// Azure Blob Storage in tests: a throwaway Azurite (`azurite-blob`, from npm) on a free
// loopback port with its data in a temp dir, and container creation signed with the
// well-known development account's Shared Key (Azurite authenticates every request).
#![allow(dead_code)]

use std::path::Path;

use sha2::{Digest, Sha256};

use super::servers::Emulator;

/// Azurite's built-in development account and its (public, documented) key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

/// A running Azurite blob service. Dropping it kills the process.
pub struct Azurite {
    server: Emulator,
}

impl Azurite {
    /// Starts `azurite-blob` (`$LIFEBOAT_AZURITE`, else on `$PATH`); panics naming
    /// scripts/setup.sh when it is not installed.
    pub fn start() -> Azurite {
        let program = Emulator::program("Azurite", "LIFEBOAT_AZURITE", "azurite-blob");
        let server = Emulator::start("azurite", &program, azurite_args, "/");
        Azurite { server }
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.server.port())
    }

    /// Creates container `name`; panics unless Azurite says 201 Created.
    pub fn create_container(&self, name: &str) {
        let path = format!("/{ACCOUNT}/{name}?restype=container");
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        // Shared Key string-to-sign: verb, eleven standard headers (all empty here; a zero
        // Content-Length is written as empty), the x-ms-* headers, then the resource.
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n\
             /{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        );
        let key = base64_decode(ACCOUNT_KEY);
        let signature = base64_encode(&hmac_sha256(&key, string_to_sign.as_bytes()));
        let (status, body) = self.server.request(
            "PUT",
            &path,
            &[
                ("x-ms-date", date),
                ("x-ms-version", API_VERSION.to_string()),
                ("Authorization", format!("SharedKey {ACCOUNT}:{signature}")),
            ],
            b"",
        );
        assert_eq!(
            status,
            201,
            "Azurite refused to create container {name}: {body}\n--- Azurite log ---\n{}",
            self.server.log_tail()
        );
    }
}

fn azurite_args(port: u16, data: &Path) -> Vec<String> {
    [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--location",
        &data.to_string_lossy(),
        // No telemetry: the tests reach nothing but loopback.
        "--disableTelemetry",
        "--skipApiVersionCheck",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut bits, mut n) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {text}")) as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}
