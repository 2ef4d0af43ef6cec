//! `[platform]`: which language platform builds and starts a bundle without a Procfile, and
//! that platform's options (docs/platforms.md). Pure.

use std::collections::BTreeMap;

pub use hostmanager_protocol::{is_wsgi_path, static_mapping_problem};

use super::platform_model::*;
use super::reader::Section;

pub(super) fn platform(mut s: Section) -> PlatformConfig {
    let name_text = s.get("name", "auto".to_string());
    let name = match name_text.as_str() {
        "auto" => PlatformChoice::Auto,
        other => match PlatformName::from_name(other) {
            Some(name) => PlatformChoice::Fixed(name),
            None => {
                s.problem(
                    "name",
                    format!(
                        "{other:?} is not one of \"auto\", \"python\", \"nodejs\", \"go\", \"java\", \"procfile\""
                    ),
                );
                PlatformChoice::Auto
            }
        },
    };
    let static_files = static_files(&mut s, BTreeMap::new());
    let python = python(s.section("python"));
    let nodejs = nodejs(s.section("nodejs"));
    let java = java(s.section("java"));
    s.finish();
    PlatformConfig {
        name,
        static_files,
        python,
        nodejs,
        java,
    }
}

fn python(mut s: Section) -> PythonOptions {
    let wsgi_path = s.get("wsgi_path", "application".to_string());
    if !is_wsgi_path(&wsgi_path) {
        s.problem(
            "wsgi_path",
            format!(
                "{wsgi_path:?} is not a module (`application`, `project.wsgi`), a file (`application.py`) or module:callable (`project.wsgi:application`)"
            ),
        );
    }
    let processes = s.get("processes", 1u32);
    if processes == 0 {
        s.problem("processes", "must be at least 1");
    }
    let threads = s.get("threads", 15u32);
    if threads == 0 {
        s.problem("threads", "must be at least 1");
    }
    let static_files = static_files(
        &mut s,
        BTreeMap::from([("/static".to_string(), "static".to_string())]),
    );
    s.finish();
    PythonOptions {
        wsgi_path,
        processes: processes.max(1),
        threads: threads.max(1),
        static_files,
    }
}

/// `static_files`: URL path → directory of the release, each mapping checked.
fn static_files(s: &mut Section, default: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mappings: BTreeMap<String, String> = s.get("static_files", default);
    for (url, dir) in &mappings {
        if let Some(problem) = static_mapping_problem(url, dir) {
            s.problem("static_files", format!("{url:?} = {dir:?}: {problem}"));
        }
    }
    mappings
}

/// `[platform]` with a deployment's platform options (a controller's, in the namespaces of
/// `hostmanager_protocol::PLATFORM_NAMESPACES`) and Elastic Beanstalk's `NPM_USE_PRODUCTION`
/// property over it. The controller checked each option when it was set; one that is wrong
/// anyway fails the deployment, naming it.
pub fn with_options(
    base: &PlatformConfig,
    options: &BTreeMap<String, String>,
    properties: &BTreeMap<String, String>,
) -> Result<PlatformConfig, String> {
    use hostmanager_protocol::{CONTAINER_PYTHON, PLATFORM, STATIC_FILES, platform_option_problem};
    let mut config = base.clone();
    for (key, value) in options {
        let Some((namespace, option)) = key.rsplit_once(':') else {
            return Err(format!("{key}: expected namespace:option"));
        };
        if let Some(problem) = platform_option_problem(namespace, option, value) {
            return Err(problem);
        }
        let number = || value.parse::<u32>().unwrap_or(1).max(1);
        match (namespace, option) {
            (PLATFORM, "Name") => {
                config.name = PlatformName::from_name(value)
                    .map_or(PlatformChoice::Auto, PlatformChoice::Fixed);
            }
            (PLATFORM, "JvmOptions") => {
                config.java.jvm_options = value.split_whitespace().map(String::from).collect();
            }
            (PLATFORM, "NpmUseProduction") => config.nodejs.production = value == "true",
            (CONTAINER_PYTHON, "WSGIPath") => config.python.wsgi_path = value.clone(),
            (CONTAINER_PYTHON, "NumProcesses") => config.python.processes = number(),
            (CONTAINER_PYTHON, "NumThreads") => config.python.threads = number(),
            (STATIC_FILES, url) => {
                config.static_files.insert(url.to_string(), value.clone());
            }
            _ => return Err(format!("{key}: not a platform option")),
        }
    }
    if let Some(value) = properties.get("NPM_USE_PRODUCTION") {
        config.nodejs.production = value != "false";
    }
    Ok(config)
}

fn nodejs(mut s: Section) -> NodeOptions {
    let production = s.get("production", true);
    s.finish();
    NodeOptions { production }
}

fn java(mut s: Section) -> JavaOptions {
    let jvm_options: Vec<String> = s.get("jvm_options", Vec::new());
    for option in &jvm_options {
        if !option.starts_with('-') || option.chars().any(|c| c.is_whitespace() || c == '\0') {
            s.problem(
                "jvm_options",
                format!("{option:?} is not one JVM option (each starts with '-', no spaces)"),
            );
        }
    }
    s.finish();
    JavaOptions { jvm_options }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controllers_options_and_npm_use_production_override_the_hosts_config() {
        let base = crate::config::default_config().platform;
        let options = BTreeMap::from([
            (
                "hostmanager:platform:Name".to_string(),
                "python".to_string(),
            ),
            (
                "aws:elasticbeanstalk:container:python:WSGIPath".to_string(),
                "ebdjango/wsgi.py".to_string(),
            ),
            (
                "aws:elasticbeanstalk:container:python:NumThreads".to_string(),
                "4".to_string(),
            ),
            (
                "aws:elasticbeanstalk:environment:proxy:staticfiles:/images".to_string(),
                "img".to_string(),
            ),
        ]);
        let properties = BTreeMap::from([("NPM_USE_PRODUCTION".to_string(), "false".to_string())]);
        let config = with_options(&base, &options, &properties).expect("valid");
        assert_eq!(config.name, PlatformChoice::Fixed(PlatformName::Python));
        assert_eq!(config.python.wsgi_path, "ebdjango/wsgi.py");
        assert_eq!(config.python.threads, 4);
        assert_eq!(config.static_files["/images"], "img");
        assert!(!config.nodejs.production);
        let wrong = BTreeMap::from([("hostmanager:platform:Name".to_string(), "ruby".to_string())]);
        let error = with_options(&base, &wrong, &BTreeMap::new()).expect_err("refused");
        assert!(
            error.starts_with("hostmanager:platform:Name: \"ruby\""),
            "{error}"
        );
    }
}
