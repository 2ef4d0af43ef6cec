//! Multipart upload of a large file to S3: parts read straight from the file at their offsets,
//! a few in flight at once, completed create-only (`If-None-Match: *` on the completion, so a
//! retry never replaces an object); aborted when anything fails, so no orphan parts are billed.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::task::JoinSet;

use super::s3::{S3Store, status};
use super::{ObjectStore, PutOptions, PutOutcome, StoreError};

pub(super) async fn put(
    store: &S3Store,
    key: &str,
    path: &Path,
    size: u64,
    options: &PutOptions,
) -> Result<PutOutcome, StoreError> {
    // Cheap early answer; the conditional completion below is what guarantees it.
    if options.if_none_match && store.head(key).await?.is_some() {
        return Ok(PutOutcome::AlreadyExists);
    }
    let created = store
        .client()
        .create_multipart_upload()
        .bucket(store.bucket())
        .key(key)
        .set_content_type(options.content_type.clone())
        .send()
        .await
        .map_err(|error| store.remote("CreateMultipartUpload", key, &error))?;
    let Some(upload_id) = created.upload_id().map(str::to_string) else {
        return Err(StoreError::Remote {
            store: store.describe(),
            operation: "CreateMultipartUpload",
            key: key.to_string(),
            message: "no upload id in the answer".into(),
        });
    };
    let outcome = upload_and_complete(store, key, path, size, options, &upload_id).await;
    if !matches!(outcome, Ok(PutOutcome::Created)) {
        let _ = store
            .client()
            .abort_multipart_upload()
            .bucket(store.bucket())
            .key(key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    outcome
}

async fn upload_and_complete(
    store: &S3Store,
    key: &str,
    path: &Path,
    size: u64,
    options: &PutOptions,
    upload_id: &str,
) -> Result<PutOutcome, StoreError> {
    let settings = store.multipart();
    let part_size = settings.part_size;
    let count = size.div_ceil(part_size).max(1);
    let mut parts: Vec<Option<CompletedPart>> = vec![None; count as usize];
    let mut in_flight: JoinSet<Result<(usize, CompletedPart), StoreError>> = JoinSet::new();
    for index in 0..count {
        while in_flight.len() >= settings.concurrency {
            collect(&mut in_flight, &mut parts).await?;
        }
        let part = Part {
            store: store.clone(),
            key: key.to_string(),
            path: path.to_path_buf(),
            upload_id: upload_id.to_string(),
            number: index as i32 + 1,
            offset: index * part_size,
            length: part_size.min(size - index * part_size),
        };
        in_flight.spawn(part.upload());
    }
    while !in_flight.is_empty() {
        collect(&mut in_flight, &mut parts).await?;
    }
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(parts.into_iter().flatten().collect()))
        .build();
    let mut request = store
        .client()
        .complete_multipart_upload()
        .bucket(store.bucket())
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(completed);
    if options.if_none_match {
        request = request.if_none_match("*");
    }
    match request.send().await {
        Ok(_) => Ok(PutOutcome::Created),
        Err(error) if status(&error) == Some(412) => Ok(PutOutcome::AlreadyExists),
        Err(error) => Err(store.remote("CompleteMultipartUpload", key, &error)),
    }
}

async fn collect(
    in_flight: &mut JoinSet<Result<(usize, CompletedPart), StoreError>>,
    parts: &mut [Option<CompletedPart>],
) -> Result<(), StoreError> {
    match in_flight.join_next().await {
        Some(Ok(Ok((index, part)))) => {
            parts[index] = Some(part);
            Ok(())
        }
        Some(Ok(Err(error))) => Err(error),
        Some(Err(join)) => Err(StoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        }),
        None => Ok(()),
    }
}

struct Part {
    store: S3Store,
    key: String,
    path: PathBuf,
    upload_id: String,
    number: i32,
    offset: u64,
    length: u64,
}

impl Part {
    async fn upload(self) -> Result<(usize, CompletedPart), StoreError> {
        let body = ByteStream::read_from()
            .path(&self.path)
            .offset(self.offset)
            .length(Length::Exact(self.length))
            .build()
            .await
            .map_err(|error| StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(error),
            })?;
        let output = self
            .store
            .client()
            .upload_part()
            .bucket(self.store.bucket())
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .body(body)
            .send()
            .await
            .map_err(|error| self.store.remote("UploadPart", &self.key, &error))?;
        let part = CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(output.e_tag().map(str::to_string))
            .build();
        Ok(((self.number - 1) as usize, part))
    }
}

pub(super) async fn abort_unfinished(store: &S3Store, prefix: &str) -> Result<usize, StoreError> {
    let mut aborted = 0;
    let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = store
            .client()
            .list_multipart_uploads()
            .bucket(store.bucket())
            .prefix(prefix)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await
            .map_err(|error| store.remote("ListMultipartUploads", prefix, &error))?;
        for upload in page.uploads() {
            let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            store
                .client()
                .abort_multipart_upload()
                .bucket(store.bucket())
                .key(key)
                .upload_id(id)
                .send()
                .await
                .map_err(|error| store.remote("AbortMultipartUpload", key, &error))?;
            aborted += 1;
        }
        if page.is_truncated() != Some(true) {
            return Ok(aborted);
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
        if key_marker.is_none() && id_marker.is_none() {
            return Ok(aborted);
        }
    }
}
