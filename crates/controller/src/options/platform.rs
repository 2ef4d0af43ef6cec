//! The platform options (`hostmanager:platform`, `aws:elasticbeanstalk:container:python`,
//! `aws:elasticbeanstalk:environment:proxy:staticfiles`): checked by the protocol's rules when
//! set, and forwarded to every host with the environment's desired state, where they override
//! the host's `[platform]` (docs/platforms.md).

use std::collections::BTreeMap;

use super::split_key;
use crate::model::OptionSettings;

/// The settings in the platform namespaces, as the desired state carries them.
pub fn platform_options(settings: &OptionSettings) -> BTreeMap<String, String> {
    settings
        .iter()
        .filter(|(key, _)| {
            split_key(key).is_some_and(|(namespace, _)| {
                hostmanager_protocol::PLATFORM_NAMESPACES.contains(&namespace)
            })
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_platform_namespaces_are_forwarded_and_each_is_checked() {
        let settings: OptionSettings = [
            ("aws:elasticbeanstalk:container:python:WSGIPath", "app.py"),
            (
                "aws:elasticbeanstalk:environment:proxy:staticfiles:/img",
                "images",
            ),
            ("hostmanager:platform:Name", "python"),
            ("aws:elasticbeanstalk:command:Timeout", "600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let forwarded = platform_options(&settings);
        assert_eq!(forwarded.len(), 3, "{forwarded:?}");
        assert!(!forwarded.contains_key("aws:elasticbeanstalk:command:Timeout"));
        assert!(super::super::validate(&settings, false).is_empty());
        let wrong: OptionSettings = [(
            "aws:elasticbeanstalk:container:python:NumProcesses".to_string(),
            "0".to_string(),
        )]
        .into_iter()
        .collect();
        let problems = super::super::validate(&wrong, false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("aws:elasticbeanstalk:container:python:NumProcesses"));
    }
}
