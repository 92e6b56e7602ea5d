//! GCS writes through the JSON API; reads, lists and deletes through `object_store`.
//!
//! `object_store`'s GCS client writes with the XML API (a `PUT` per object, multipart uploads
//! with `POST ?uploads`). lifeboat writes through the JSON upload API instead: a media upload
//! for a small object, a resumable upload session for a stream. Both are first-class GCS APIs,
//! and they are the ones the GCS emulators implement, so the write path the conformance suite
//! proves is the one production runs.
//!
//! # Guarantees
//! - An object appears only when its upload is finalized: an interrupted stream leaves no
//!   object (GCS discards an unfinished session after a week; [`MultipartUpload::abort`]
//!   cancels it at once).
//! - Chunks reach the session one at a time, in order, whatever order their futures are
//!   polled in; a failed chunk fails every later one and the completion.
//! - Credentials come from `object_store`'s provider (service account, workload identity,
//!   metadata server); a token is fetched per request, so a long upload outlives one token.
//!
//! # Caveats
//! - Every chunk but the last must be a multiple of 256 KiB: the store's `part_size` is
//!   checked at open ([`check_part_size`]).
//! - A chunk is not retried inside a session; a failed upload fails the backup, which the
//!   daemon retries as a whole.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tokio::sync::watch;

/// Resumable-upload chunks (all but the last) are multiples of this.
pub const CHUNK_GRANULE: usize = 256 * 1024;

const STORE: &str = "GCS";

/// Refuses a part size the resumable upload protocol cannot send.
pub fn check_part_size(part_size: usize) -> Result<(), String> {
    if part_size == 0 || !part_size.is_multiple_of(CHUNK_GRANULE) {
        return Err(format!(
            "part_size {part_size} is not a multiple of 256KiB, which GCS resumable uploads require; use e.g. 8MiB"
        ));
    }
    Ok(())
}

fn generic(reason: impl Into<String>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: reason.into().into(),
    }
}

fn not_implemented(operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_string(),
        implementer: "lifeboat's GCS JSON-API writer".to_string(),
    }
}

/// A GCS bucket: `object_store` for reads, lists and deletes, the JSON API for writes.
#[derive(Debug, Clone)]
pub struct JsonWrites {
    inner: Arc<GoogleCloudStorage>,
    http: reqwest::Client,
    /// `{base}/upload/storage/v1/b/{bucket}/o`
    uploads: String,
}

impl std::fmt::Display for JsonWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GCS({})", self.uploads)
    }
}

impl JsonWrites {
    /// `base_url`: the configured endpoint, or Google's.
    pub fn new(
        inner: GoogleCloudStorage,
        base_url: Option<&str>,
        bucket: &str,
    ) -> Result<JsonWrites, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            // A resumable session answers 308 for "chunk stored": never a redirect to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the GCS HTTP client: {e}"))?;
        let base = base_url
            .unwrap_or("https://storage.googleapis.com")
            .trim_end_matches('/');
        let bucket = percent_encoding::utf8_percent_encode(bucket, SEGMENT);
        Ok(JsonWrites {
            inner: Arc::new(inner),
            http,
            uploads: format!("{base}/upload/storage/v1/b/{bucket}/o"),
        })
    }

    /// Starts a request with the provider's bearer token (none when it has an empty one,
    /// as an emulator's `disable_oauth` service account does).
    async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> object_store::Result<reqwest::RequestBuilder> {
        authorized(&self.inner, self.http.request(method, url)).await
    }
}

/// Characters escaped in a URL path segment or query value (an object name keeps nothing
/// unescaped but the unreserved set).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

async fn authorized(
    inner: &GoogleCloudStorage,
    request: reqwest::RequestBuilder,
) -> object_store::Result<reqwest::RequestBuilder> {
    let credential = inner.credentials().get_credential().await?;
    Ok(if credential.bearer.is_empty() {
        request
    } else {
        request.bearer_auth(&credential.bearer)
    })
}

/// The error of a non-success answer: status and the start of the body (GCS error bodies
/// name the reason; they carry no credentials).
async fn refused(what: &str, response: reqwest::Response) -> object_store::Error {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    let reason = format!("{what}: HTTP {status}: {}", body.trim());
    match status.as_u16() {
        401 | 403 => object_store::Error::PermissionDenied {
            path: what.to_string(),
            source: reason.into(),
        },
        404 => object_store::Error::NotFound {
            path: what.to_string(),
            source: reason.into(),
        },
        _ => generic(reason),
    }
}

fn stored() -> PutResult {
    PutResult {
        e_tag: None,
        version: None,
        extensions: Default::default(),
    }
}

fn unreachable(what: &str, e: reqwest::Error) -> object_store::Error {
    generic(format!("{what}: {e}"))
}

#[async_trait]
impl ObjectStore for JsonWrites {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if !matches!(opts.mode, PutMode::Overwrite) {
            return Err(not_implemented("conditional put"));
        }
        let name = percent_encoding::utf8_percent_encode(location.as_ref(), SEGMENT);
        let url = format!("{}?uploadType=media&name={name}", self.uploads);
        let body: Bytes = payload.into();
        let response = self
            .request(reqwest::Method::POST, &url)
            .await?
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable("upload", e))?;
        if !response.status().is_success() {
            return Err(refused("upload", response).await);
        }
        Ok(stored())
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let name = percent_encoding::utf8_percent_encode(location.as_ref(), SEGMENT);
        let url = format!("{}?uploadType=resumable&name={name}", self.uploads);
        let response = self
            .request(reqwest::Method::POST, &url)
            .await?
            .header("Content-Type", "application/json; charset=UTF-8")
            .header("X-Upload-Content-Type", "application/octet-stream")
            .body("{}")
            .send()
            .await
            .map_err(|e| unreachable("start upload", e))?;
        if !response.status().is_success() {
            return Err(refused("start upload", response).await);
        }
        let session = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| generic("start upload: the answer names no upload session"))?;
        let (committed, _) = watch::channel(Committed::Upto(0));
        Ok(Box::new(Resumable {
            store: self.clone(),
            session,
            next: 0,
            finalized: false,
            committed: Arc::new(committed),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// How far a session has been stored, or that a chunk failed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Committed {
    Upto(u64),
    Failed,
}

/// One resumable upload session.
#[derive(Debug)]
struct Resumable {
    store: JsonWrites,
    session: String,
    /// Offset of the next chunk handed to `put_part`.
    next: u64,
    /// A chunk that is not a multiple of the granule was the last one, sent with the total.
    finalized: bool,
    committed: Arc<watch::Sender<Committed>>,
}

impl Resumable {
    /// Waits until everything before `offset` is stored; `false` if a chunk failed.
    async fn turn(committed: &watch::Sender<Committed>, offset: u64) -> bool {
        let mut rx = committed.subscribe();
        match rx
            .wait_for(|c| matches!(c, Committed::Failed) || *c == Committed::Upto(offset))
            .await
        {
            Ok(c) => *c == Committed::Upto(offset),
            Err(_) => false,
        }
    }

    /// Sends one chunk (`range` is the Content-Range value); stored (308) or, for the final
    /// chunk, created (200/201).
    async fn send(
        store: &JsonWrites,
        session: &str,
        range: String,
        body: Bytes,
    ) -> object_store::Result<()> {
        let response = authorized(
            &store.inner,
            store.http.put(session).header("Content-Range", range),
        )
        .await?
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable("upload part", e))?;
        match response.status().as_u16() {
            200 | 201 | 308 => Ok(()),
            _ => Err(refused("upload part", response).await),
        }
    }
}

#[async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let start = self.next;
        let len = data.content_length() as u64;
        self.next += len;
        let last = !(len as usize).is_multiple_of(CHUNK_GRANULE);
        if last {
            self.finalized = true;
        }
        let total = if last {
            self.next.to_string()
        } else {
            "*".to_string()
        };
        let store = self.store.clone();
        let session = self.session.clone();
        let committed = self.committed.clone();
        Box::pin(async move {
            if len == 0 {
                return Ok(());
            }
            if !Resumable::turn(&committed, start).await {
                return Err(generic("upload part: an earlier part failed"));
            }
            let range = format!("bytes {start}-{}/{total}", start + len - 1);
            let sent = Resumable::send(&store, &session, range, data.into()).await;
            committed.send_replace(match sent {
                Ok(()) => Committed::Upto(start + len),
                Err(_) => Committed::Failed,
            });
            sent
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if !Resumable::turn(&self.committed, self.next).await {
            return Err(generic("complete upload: a part failed"));
        }
        if !self.finalized {
            // Every chunk was a whole number of granules: an empty request names the total.
            let range = format!("bytes */{}", self.next);
            Resumable::send(&self.store, &self.session, range, Bytes::new()).await?;
            self.finalized = true;
        }
        Ok(stored())
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // GCS answers a cancelled session with 499; anything else is also final for us.
        let request = authorized(&self.store.inner, self.store.http.delete(&self.session)).await?;
        request
            .send()
            .await
            .map_err(|e| unreachable("abort upload", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_are_whole_granules() {
        assert!(check_part_size(8 * 1024 * 1024).is_ok());
        assert!(check_part_size(5 * 1024 * 1024).is_ok());
        assert!(check_part_size(5_000_000).is_err());
        assert!(check_part_size(0).is_err());
    }
}
