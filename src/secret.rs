//! Values that must never reach a log by accident. Pure.
//!
//! `missing_debug_implementations` puts `#[derive(Debug)]` on nearly every type, so one
//! `?request` in a `tracing::debug!` would print whatever a type holds. The types here print
//! a placeholder instead; code that needs the value asks for it by name (`Secret::expose`) or,
//! for environment properties, reads the map (the agent must hand the values to the app).
//! Serialization is transparent: the JSON on the wire and on disk is the plain value.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What `Debug` prints in place of a secret.
pub const REDACTED: &str = "***";

/// A secret value: `Debug` prints `***`, `Display` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself: call sites that use it say so.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub use hostmanager_protocol::Properties;

/// Query parameters that authorise whoever holds the URL (presigned S3 and CloudFront URLs,
/// Google Cloud Storage signed URLs, Azure SAS tokens), compared without case.
const SECRET_QUERY_KEYS: &[&str] = &[
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
    "key-pair-id",
    "policy",
    "x-goog-signature",
    "x-goog-credential",
    "googleaccessid",
    "sig",
    "token",
    "access_token",
];

/// A bundle source as it may be shown (records, status, events, logs, error messages): the
/// values of secret query parameters and a password in the authority become `***`. Anything
/// that is not a URL with a query or a user is returned unchanged. The full URL is only used
/// to fetch.
pub fn shown_source(source: &str) -> String {
    let Some((scheme, rest)) = source.split_once("://") else {
        return source.to_string();
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    let (location, query) = match before_fragment.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (before_fragment, None),
    };
    let mut shown = format!("{scheme}://{}", without_password(location));
    if let Some(query) = query {
        shown.push('?');
        let pairs: Vec<String> = query.split('&').map(shown_pair).collect();
        shown.push_str(&pairs.join("&"));
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

/// `user:password@host/path` → `user:***@host/path`.
fn without_password(location: &str) -> String {
    let authority_end = location.find('/').unwrap_or(location.len());
    let (authority, path) = location.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:{REDACTED}@{host}{path}"),
            None => location.to_string(),
        },
        None => location.to_string(),
    }
}

fn shown_pair(pair: &str) -> String {
    let key = pair.split_once('=').map_or(pair, |(key, _)| key);
    if SECRET_QUERY_KEYS
        .iter()
        .any(|secret| key.eq_ignore_ascii_case(secret))
    {
        format!("{key}={REDACTED}")
    } else {
        pair.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_a_placeholder_and_serialize_as_the_value() {
        let token = Secret::new("s3cret-token".to_string());
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(token.expose(), "s3cret-token");
        let json = serde_json::to_string(&token).expect("serialize");
        assert_eq!(json, r#""s3cret-token""#);
        let back: Secret<String> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, token);
    }

    #[test]
    fn properties_show_their_names_and_hide_their_values() {
        let properties: Properties = [("DB_PASSWORD".to_string(), "hunter2".to_string())]
            .into_iter()
            .collect();
        let debug = format!("{properties:?}");
        assert_eq!(debug, r#"{"DB_PASSWORD": ***}"#);
        let pretty = format!("{properties:#?}");
        assert!(!pretty.contains("hunter2"), "{pretty}");
        let json = serde_json::to_string(&properties).expect("serialize");
        assert_eq!(json, r#"{"DB_PASSWORD":"hunter2"}"#);
        let back: Properties = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.get("DB_PASSWORD").map(String::as_str), Some("hunter2"));
    }

    #[test]
    fn presigned_urls_are_shown_without_their_signature() {
        let url = "https://bucket.s3.amazonaws.com/k.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256\
                   &X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request\
                   &X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
                   &X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-Signature=0123abcdef";
        assert_eq!(
            shown_source(url),
            "https://bucket.s3.amazonaws.com/k.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=***&X-Amz-Date=20260101T000000Z&X-Amz-Expires=900\
             &X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=***"
        );
        assert_eq!(
            shown_source(
                "https://b.s3.amazonaws.com/k.zip?AWSAccessKeyId=AKIA&Expires=1&Signature=abc"
            ),
            "https://b.s3.amazonaws.com/k.zip?AWSAccessKeyId=***&Expires=1&Signature=***"
        );
        assert_eq!(
            shown_source("https://a.blob.core.windows.net/c/k.zip?sv=2022&SIG=xyz#part"),
            "https://a.blob.core.windows.net/c/k.zip?sv=2022&SIG=***#part"
        );
    }

    #[test]
    fn passwords_in_urls_are_hidden_and_everything_else_is_left_alone() {
        assert_eq!(
            shown_source("https://deploy:pa55@h.example/app.zip"),
            "https://deploy:***@h.example/app.zip"
        );
        for unchanged in [
            "/srv/bundles/app.zip",
            "file:///srv/app.zip",
            "s3://bucket/dir/app.zip?versionId=v7",
            "https://h.example/app.zip",
            "https://user@h.example/app.zip",
            "https://h.example/a@b/app.zip",
        ] {
            assert_eq!(shown_source(unchanged), unchanged);
        }
        // A secret key without a value still reads as one.
        assert_eq!(
            shown_source("https://h.example/app.zip?sig"),
            "https://h.example/app.zip?sig=***"
        );
    }
}
