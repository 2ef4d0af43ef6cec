//! A directory used as an object store: key `a/b/c` is the file `<dir>/a/b/c`. Writes go to a
//! temporary file and are renamed into place, so readers never see half an object.

use std::path::{Path, PathBuf};

use super::{
    BoxFuture, Downloaded, HashingFile, ObjectMeta, ObjectStore, PutOptions, PutOutcome, StoreError,
};

#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // Keys come from our own naming, but a key must never climb out of the directory.
        let relative = crate::deploy::entry_path(key).map_err(|problem| StoreError::Remote {
            store: self.describe(),
            operation: "resolve",
            key: key.to_string(),
            message: problem.to_string(),
        })?;
        Ok(self.dir.join(relative))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        options: PutOptions,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let target = self.path(key)?;
            if options.if_none_match && tokio::fs::try_exists(&target).await.unwrap_or(false) {
                return Ok(PutOutcome::AlreadyExists);
            }
            let parent = target.parent().unwrap_or(&self.dir).to_path_buf();
            tokio::fs::create_dir_all(&parent)
                .await
                .map_err(io(&parent))?;
            let tmp = parent.join(format!(
                ".{}.part",
                target
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            tokio::fs::copy(path, &tmp).await.map_err(io(path))?;
            if options.if_none_match {
                // hard_link fails if the target exists: create-only, atomically.
                let linked = tokio::fs::hard_link(&tmp, &target).await;
                let _ = tokio::fs::remove_file(&tmp).await;
                return match linked {
                    Ok(()) => Ok(PutOutcome::Created),
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        Ok(PutOutcome::AlreadyExists)
                    }
                    Err(error) => Err(StoreError::Io {
                        path: target,
                        source: error,
                    }),
                };
            }
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(io(&target))?;
            Ok(PutOutcome::Created)
        })
    }

    fn get_to_file<'a>(
        &'a self,
        key: &'a str,
        _version: Option<&'a str>,
        path: &'a Path,
        max_bytes: u64,
    ) -> BoxFuture<'a, Result<Downloaded, StoreError>> {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let source = self.path(key)?;
            let mut input = match tokio::fs::File::open(&source).await {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound {
                        store: self.describe(),
                        key: key.to_string(),
                    });
                }
                Err(error) => {
                    return Err(StoreError::Io {
                        path: source,
                        source: error,
                    });
                }
            };
            let mut output = HashingFile::create(path, max_bytes).await?;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let read = input.read(&mut buffer).await.map_err(io(&source))?;
                if read == 0 {
                    break;
                }
                if !output.write(&buffer[..read], path).await? {
                    return Err(StoreError::TooLarge {
                        store: self.describe(),
                        key: key.to_string(),
                        limit: max_bytes,
                    });
                }
            }
            output.finish(path).await
        })
    }

    fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ObjectMeta>, StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::metadata(&path).await {
                Ok(meta) => {
                    let hashed = path.clone();
                    let etag = tokio::task::spawn_blocking(move || super::file_etag(&hashed, None))
                        .await
                        .ok()
                        .and_then(Result::ok);
                    Ok(Some(ObjectMeta {
                        key: key.to_string(),
                        size: meta.len(),
                        etag,
                    }))
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(StoreError::Io {
                    path,
                    source: error,
                }),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let path = self.path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(StoreError::Io {
                    path,
                    source: error,
                }),
            }
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectMeta>, StoreError>> {
        Box::pin(async move {
            let dir = self.dir.clone();
            let found = tokio::task::spawn_blocking(move || {
                let mut found = Vec::new();
                walk(&dir, &dir, &mut found);
                found
            })
            .await
            .unwrap_or_default();
            let mut objects: Vec<ObjectMeta> = found
                .into_iter()
                .filter(|meta| meta.key.starts_with(prefix))
                .collect();
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(objects)
        })
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<ObjectMeta>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, found);
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            let key = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            found.push(ObjectMeta {
                key,
                size: meta.len(),
                etag: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_only_puts_never_replace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path().join("bucket"));
        let file = dir.path().join("f");
        std::fs::write(&file, b"one").expect("write");
        let create_only = PutOptions {
            if_none_match: true,
            ..Default::default()
        };
        assert_eq!(
            store
                .put_file("a/b.gz", &file, create_only.clone())
                .await
                .expect("put"),
            PutOutcome::Created
        );
        std::fs::write(&file, b"two").expect("write");
        assert_eq!(
            store
                .put_file("a/b.gz", &file, create_only)
                .await
                .expect("put"),
            PutOutcome::AlreadyExists
        );
        let fetched = dir.path().join("out");
        let downloaded = store
            .get_to_file("a/b.gz", None, &fetched, 100)
            .await
            .expect("get");
        assert_eq!(std::fs::read(&fetched).expect("read"), b"one");
        assert_eq!(downloaded.bytes, 3);
        let listed = store.list("a/").await.expect("list");
        assert_eq!(
            listed,
            vec![ObjectMeta {
                key: "a/b.gz".into(),
                size: 3,
                etag: None,
            }]
        );
        assert!(store.path("../escape").is_err());
        assert!(matches!(
            store.get_to_file("a/b.gz", None, &fetched, 2).await,
            Err(StoreError::TooLarge { .. })
        ));
    }
}
