//! S3 (or any S3-compatible server) through aws-sdk-s3.

use std::path::Path;

use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::{
    BoxFuture, Downloaded, HashingFile, ObjectMeta, ObjectStore, PutOptions, PutOutcome, StoreError,
};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    multipart: Multipart,
}

/// Files of at least `threshold` bytes go up in parts of `part_size`, `concurrency` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Multipart {
    pub threshold: u64,
    pub part_size: u64,
    pub concurrency: usize,
}

impl Default for Multipart {
    fn default() -> Self {
        Self {
            threshold: 64 << 20,
            part_size: 16 << 20,
            concurrency: 4,
        }
    }
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            multipart: Multipart::default(),
        }
    }

    pub fn with_multipart(mut self, multipart: Multipart) -> Self {
        self.multipart = Multipart {
            part_size: multipart.part_size.max(5 << 20),
            concurrency: multipart.concurrency.max(1),
            ..multipart
        };
        self
    }

    pub(super) fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub(super) fn multipart(&self) -> Multipart {
        self.multipart
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(super) fn remote<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        operation: &'static str,
        key: &str,
        error: &SdkError<E, R>,
    ) -> StoreError {
        StoreError::Remote {
            store: self.describe(),
            operation,
            key: key.to_string(),
            message: DisplayErrorContext(error).to_string(),
        }
    }
}

pub(super) fn status<E, R: HasStatus>(error: &SdkError<E, R>) -> Option<u16> {
    error.raw_response().map(HasStatus::status_code)
}

pub(super) trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let size = tokio::fs::metadata(path)
                .await
                .map_err(|source| StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .len();
            if self.part_size_for(size).is_some() {
                return super::multipart::put(self, key, path, size, &options).await;
            }
            let body = ByteStream::from_path(path)
                .await
                .map_err(|error| StoreError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(error),
                })?;
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body);
            if options.if_none_match {
                request = request.if_none_match("*");
            }
            if let Some(content_type) = &options.content_type {
                request = request.content_type(content_type);
            }
            match request.send().await {
                Ok(_) => Ok(PutOutcome::Created),
                // 412 Precondition Failed: the object exists (our keys are deterministic, so it is ours).
                Err(error) if status(&error) == Some(412) => Ok(PutOutcome::AlreadyExists),
                Err(error) => Err(self.remote("PutObject", key, &error)),
            }
        })
    }

    fn get_to_file<'a>(
        &'a self,
        key: &'a str,
        version: Option<&'a str>,
        path: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Downloaded, StoreError>> {
        Box::pin(async move {
            let response = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(error) if status(&error) == Some(404) => {
                    return Err(StoreError::NotFound {
                        store: self.describe(),
                        key: key.to_string(),
                    });
                }
                Err(error) => return Err(self.remote("GetObject", key, &error)),
            };
            let too_large = || StoreError::TooLarge {
                store: self.describe(),
                key: key.to_string(),
                limit: max_bytes,
            };
            if output
                .content_length()
                .is_some_and(|length| length as u64 > max_bytes)
            {
                return Err(too_large());
            }
            let mut body = output.body;
            let mut file = HashingFile::create(path, max_bytes).await?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| StoreError::Remote {
                    store: self.describe(),
                    operation: "GetObject",
                    key: key.to_string(),
                    message: error.to_string(),
                })?;
                if !file.write(&chunk, path).await? {
                    return Err(too_large());
                }
            }
            file.finish(path).await
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>, StoreError>> {
        Box::pin(async move {
            match self
                .client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(output) => Ok(Some(ObjectMeta {
                    key: key.to_string(),
                    size: output.content_length().unwrap_or(0).max(0) as u64,
                    etag: output.e_tag().map(|tag| tag.trim_matches('"').to_string()),
                })),
                Err(error) if status(&error) == Some(404) => Ok(None),
                Err(error) => Err(self.remote("HeadObject", key, &error)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|error| self.remote("DeleteObject", key, &error))?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>, StoreError>> {
        Box::pin(async move {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut objects = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| self.remote("ListObjectsV2", prefix, &error))?;
                for object in page.contents() {
                    let key = object.key().unwrap_or_default().to_string();
                    objects.push(ObjectMeta {
                        key,
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: None,
                    });
                }
            }
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
        })
    }

    fn abort_unfinished<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(super::multipart::abort_unfinished(self, prefix))
    }

    fn part_size_for(&self, size: u64) -> Option<u64> {
        (size >= self.multipart.threshold).then_some(self.multipart.part_size)
    }
}
