//! `[objects]`: where uploaded bundles are kept. The local directory suits one controller;
//! replicas behind one address need a store they all read, so S3 (or an S3-compatible
//! server) through the agent's `ObjectStore`.

use std::path::Path;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Objects {
    Local(std::path::PathBuf),
    S3 {
        bucket: String,
        /// Default: `AWS_REGION` and the SDK's chain.
        region: Option<String>,
        /// An S3-compatible server instead of AWS.
        endpoint_url: Option<String>,
        force_path_style: bool,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawObjects {
    url: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    force_path_style: Option<bool>,
}

pub(super) fn parse(raw: RawObjects, data_dir: &Path, problems: &mut Vec<String>) -> Objects {
    let local = Objects::Local(data_dir.join("objects"));
    let Some(url) = raw.url else {
        for (key, set) in [
            ("region", raw.region.is_some()),
            ("endpoint_url", raw.endpoint_url.is_some()),
            ("force_path_style", raw.force_path_style.is_some()),
        ] {
            if set {
                problems.push(format!(
                    "objects.{key}: only meaningful with objects.url = \"s3://bucket\""
                ));
            }
        }
        return local;
    };
    match url.strip_prefix("s3://") {
        Some(bucket) if is_bucket_name(bucket) => Objects::S3 {
            bucket: bucket.to_string(),
            region: raw.region,
            endpoint_url: raw.endpoint_url,
            force_path_style: raw.force_path_style.unwrap_or(false),
        },
        _ => {
            problems.push(format!(
                "objects.url: {url:?} is not s3://BUCKET (a bucket name, no key prefix); leave it out for the local directory"
            ));
            local
        }
    }
}

/// S3's rules for new buckets: 3–63 lowercase letters, digits, dots and hyphens.
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>) -> RawObjects {
        RawObjects {
            url: url.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn no_url_is_the_local_directory() {
        let mut problems = Vec::new();
        assert_eq!(
            parse(raw(None), Path::new("/d"), &mut problems),
            Objects::Local("/d/objects".into())
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn an_s3_bucket_with_its_endpoint() {
        let mut problems = Vec::new();
        let objects = parse(
            RawObjects {
                url: Some("s3://bundles-1".into()),
                endpoint_url: Some("http://127.0.0.1:9000".into()),
                force_path_style: Some(true),
                ..Default::default()
            },
            Path::new("/d"),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            objects,
            Objects::S3 {
                bucket: "bundles-1".into(),
                region: None,
                endpoint_url: Some("http://127.0.0.1:9000".into()),
                force_path_style: true
            }
        );
    }

    #[test]
    fn bad_urls_and_stray_keys_are_named() {
        let mut problems = Vec::new();
        parse(
            raw(Some("s3://Bucket/prefix")),
            Path::new("/d"),
            &mut problems,
        );
        parse(
            raw(Some("https://example.com")),
            Path::new("/d"),
            &mut problems,
        );
        parse(
            RawObjects {
                region: Some("eu-west-1".into()),
                ..Default::default()
            },
            Path::new("/d"),
            &mut problems,
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("objects.url: \"s3://Bucket/prefix\""),
            "{problems:?}"
        );
        assert!(problems[2].starts_with("objects.region:"), "{problems:?}");
    }
}
