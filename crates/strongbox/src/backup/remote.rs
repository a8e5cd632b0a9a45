//! A repository on S3-compatible object storage (`s3://bucket/prefix`), through the
//! `object_store` crate: its files are objects named `prefix/<name>` (the same layout and
//! bytes as a directory repository), read and written whole.
//!
//! Credentials, endpoint and region come from the environment as the AWS tools read them
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` for a
//! server other than AWS, `AWS_ALLOW_HTTP=true` for a plain-HTTP one). Transient errors
//! (timeouts, dropped connections, 5xx answers) are retried by `object_store`'s retry policy,
//! set here to [`RETRIES`] retries within [`RETRY_TIMEOUT`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, RetryConfig};

use super::objects::{MAX_OBJECT_BYTES, is_repository_name};
use crate::error::{Error, Result};

/// Retries of a failed request before it fails.
const RETRIES: usize = 10;

/// How long a request may keep retrying.
const RETRY_TIMEOUT: Duration = Duration::from_secs(120);

/// A bucket and prefix.
#[derive(Clone)]
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Remote {
    /// The repository at `s3://bucket/prefix` (the prefix may be empty), optionally with
    /// `?endpoint=URL` (a server other than the environment's; `http://` allows plain HTTP)
    /// and `&region=NAME`.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a URL without a bucket, or settings the client refuses.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("s3://").unwrap_or(url);
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "{url}: an S3 repository URL is s3://BUCKET/PREFIX[?endpoint=URL&region=NAME]"
            )));
        }
        let retry = RetryConfig {
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            builder = match pair.split_once('=') {
                Some(("endpoint", endpoint)) => builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://")),
                Some(("region", region)) => builder.with_region(region),
                _ => {
                    return Err(Error::InvalidConfig(format!(
                        "{url}: unknown setting {pair:?} (an S3 repository URL takes \
                         endpoint=URL and region=NAME)"
                    )));
                }
            };
        }
        let store = builder
            .build()
            .map_err(|error| Error::InvalidConfig(format!("{url}: {error}")))?;
        Ok(Remote {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            url: url.to_owned(),
        })
    }

    /// The URL.
    pub(crate) fn describe(&self) -> String {
        self.url.clone()
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The length of `prefix/` in an object's path.
    fn skip(&self) -> usize {
        if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        }
    }

    fn failed(&self, action: String) -> impl FnOnce(object_store::Error) -> Error {
        move |error| Error::Io {
            action,
            source: std::io::Error::other(error.to_string()),
        }
    }

    /// Every object of the layout under the prefix, with its size.
    pub(crate) async fn list(&self) -> Result<BTreeMap<String, u64>> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(self.failed(format!("list {}", self.url)))?;
        let skip = self.skip();
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.as_ref().get(skip..)?.to_owned();
                is_repository_name(&name).then_some((name, meta.size))
            })
            .collect())
    }

    /// The bytes of one object, refused past [`MAX_OBJECT_BYTES`].
    pub(crate) async fn get(&self, name: &str) -> Result<Vec<u8>> {
        let action = format!("read {name} from {}", self.url);
        let got = self
            .store
            .get(&self.path(name))
            .await
            .map_err(self.failed(action.clone()))?;
        if got.meta.size > MAX_OBJECT_BYTES {
            return Err(Error::Corrupt {
                collection: None,
                key: None,
                detail: format!(
                    "{name} in {} is {} bytes, more than a repository's object can be",
                    self.url, got.meta.size
                ),
            });
        }
        let bytes = got.bytes().await.map_err(self.failed(action))?;
        Ok(bytes.to_vec())
    }

    /// Stores one object (S3 makes it visible whole or not at all). The name is the caller's
    /// to check: a file of the layout, or a lock of `backup::remote_lock`.
    pub(crate) async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(bytes))
            .await
            .map_err(self.failed(format!("write {name} to {}", self.url)))?;
        Ok(())
    }

    /// Deletes one object (deleting one that is not there is not an error).
    pub(crate) async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.failed(format!("delete {name} from {}", self.url))(
                error,
            )),
        }
    }

    /// The objects under `dir/` of the prefix (`locks/`), by name (`dir/...`), with the
    /// server's time of their last write in milliseconds since the Unix epoch.
    pub(crate) async fn list_times(&self, dir: &str) -> Result<Vec<(String, i64)>> {
        let under = self.path(dir);
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&under))
            .try_collect()
            .await
            .map_err(self.failed(format!("list {dir} of {}", self.url)))?;
        let skip = self.skip();
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.as_ref().get(skip..)?.to_owned();
                Some((name, meta.last_modified.timestamp_millis()))
            })
            .collect())
    }
}
