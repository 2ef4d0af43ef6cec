//! The platform options a controller forwards to its hosts (`DeploymentRequest::
//! platform_options`) and the rules both sides check them by. Pure.

use crate::{CONTAINER_PYTHON, PLATFORM, STATIC_FILES};

/// The platform names `hostmanager:platform` `Name` (and agent.toml's `platform.name`) take.
pub const PLATFORM_NAMES: &[&str] = &["auto", "python", "nodejs", "go", "java", "procfile"];

/// What is wrong with one platform option, naming it and what is valid; `None` when it is fine.
/// `namespace` must be one of [`crate::PLATFORM_NAMESPACES`].
pub fn platform_option_problem(namespace: &str, option: &str, value: &str) -> Option<String> {
    let key = format!("{namespace}:{option}");
    let problem = match (namespace, option) {
        (PLATFORM, "Name") if !PLATFORM_NAMES.contains(&value) => {
            format!(
                "{value:?} is not valid; one of {}",
                PLATFORM_NAMES.join(", ")
            )
        }
        (PLATFORM, "JvmOptions") if value.split_whitespace().any(|o| !o.starts_with('-')) => {
            format!("{value:?} is not valid; JVM options, each starting with '-'")
        }
        (PLATFORM, "NpmUseProduction") if !matches!(value, "true" | "false") => {
            format!("{value:?} is not valid; true or false")
        }
        (PLATFORM, "Name" | "JvmOptions" | "NpmUseProduction") => return None,
        (PLATFORM, _) => {
            "unknown option; the namespace's options are Name, JvmOptions, NpmUseProduction"
                .to_string()
        }
        (CONTAINER_PYTHON, "WSGIPath") if !is_wsgi_path(value) => format!(
            "{value:?} is not a module (application, project.wsgi), a file (application.py) or module:callable"
        ),
        (CONTAINER_PYTHON, "NumProcesses" | "NumThreads")
            if !value.parse::<u32>().is_ok_and(|n| (1..=1024).contains(&n)) =>
        {
            format!("{value:?} is not valid; a number from 1 to 1024")
        }
        (CONTAINER_PYTHON, "WSGIPath" | "NumProcesses" | "NumThreads") => return None,
        (CONTAINER_PYTHON, _) => {
            "unknown option; the namespace's options are WSGIPath, NumProcesses, NumThreads"
                .to_string()
        }
        (STATIC_FILES, url) => static_mapping_problem(url, value)?.to_string(),
        _ => format!("namespace {namespace} is not a platform namespace"),
    };
    Some(format!("{key}: {problem}"))
}

/// `application`, `application.py`, `project.wsgi`, `project/wsgi.py`, `module:callable`.
/// The value ends up in the default command line: only these characters, so it never needs
/// quoting.
pub fn is_wsgi_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with(['.', '/', ':'])
        && !path.contains("..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':'))
        && path.matches(':').count() <= 1
}

/// Why a static mapping (`/static` = `static`) cannot be served, if it cannot: the URL is an
/// absolute path nginx matches by prefix, the directory stays inside the release. Both end up
/// in nginx's config: only plain characters, so they never need quoting.
pub fn static_mapping_problem(url: &str, dir: &str) -> Option<&'static str> {
    let plain = |text: &str| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
    };
    if !url.starts_with('/') || url == "/" || !plain(url) {
        return Some("the URL must be a path like /static (letters, digits, _ - . /)");
    }
    if dir.is_empty()
        || dir.starts_with('/')
        || dir.split('/').any(|part| part == "..")
        || !plain(dir)
    {
        return Some("the directory must be relative to the bundle's root, without ..");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsgi_paths_are_modules_files_or_callables() {
        for good in [
            "application",
            "application.py",
            "ebdjango.wsgi",
            "ebdjango/wsgi.py",
            "app:server",
        ] {
            assert!(is_wsgi_path(good), "{good}");
        }
        for bad in [
            "", "/abs.py", "../up.py", "a b", "a;rm", "a:b:c", ":app", "$X",
        ] {
            assert!(!is_wsgi_path(bad), "{bad}");
        }
    }

    #[test]
    fn static_mappings_stay_inside_the_release() {
        assert_eq!(static_mapping_problem("/static", "static"), None);
        assert_eq!(static_mapping_problem("/assets/img", "public/img"), None);
        assert!(static_mapping_problem("static", "static").is_some());
        assert!(static_mapping_problem("/", "static").is_some());
        assert!(static_mapping_problem("/s", "../etc").is_some());
        assert!(static_mapping_problem("/s", "/etc").is_some());
        assert!(static_mapping_problem("/s;", "s").is_some());
    }

    #[test]
    fn each_problem_names_the_option_and_what_is_valid() {
        assert_eq!(platform_option_problem(PLATFORM, "Name", "python"), None);
        assert_eq!(
            platform_option_problem(PLATFORM, "Name", "ruby").as_deref(),
            Some(
                "hostmanager:platform:Name: \"ruby\" is not valid; one of auto, python, nodejs, go, java, procfile"
            )
        );
        assert_eq!(
            platform_option_problem(CONTAINER_PYTHON, "NumThreads", "4"),
            None
        );
        assert!(
            platform_option_problem(CONTAINER_PYTHON, "NumThreads", "0")
                .is_some_and(|p| p.contains("from 1 to 1024"))
        );
        assert!(
            platform_option_problem(CONTAINER_PYTHON, "WSGIPath", "a;b")
                .is_some_and(|p| p.starts_with("aws:elasticbeanstalk:container:python:WSGIPath"))
        );
        assert_eq!(
            platform_option_problem(STATIC_FILES, "/img", "images"),
            None
        );
        assert!(platform_option_problem(STATIC_FILES, "img", "images").is_some());
        assert!(
            platform_option_problem(PLATFORM, "Colour", "x")
                .is_some_and(|p| p.contains("unknown option"))
        );
    }
}
