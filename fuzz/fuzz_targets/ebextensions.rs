//! A bundle's `.ebextensions/*.config` (`ebext/`): YAML or JSON, then the steps the agent
//! takes with each file (`deploy/ebextensions.rs`): option settings with functions resolved
//! (`Fn::GetOptionSetting`, `Ref`), the server keys (files, commands, packages, …), the
//! effects of the settings on this host and the release's settings layer.
//!
//! Properties: every failure is a message; accepted option settings name a namespace and an
//! option, and the health-check path a release ends up with is a path.
#![no_main]

use hostmanager::ebext::{
    HostFacts, OptionSetting, Parsed, ReleaseSettings, Resolver, effects, option_settings,
    parse_config, server_keys,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = ".ebextensions/01-fuzz.config";
    let mut warnings = Vec::new();
    let file = match parse_config(name, text, "v1", &mut warnings) {
        Ok(Parsed::File(file)) => file,
        Ok(Parsed::Skipped(warning)) => {
            assert!(warning.contains(name));
            return;
        }
        Err(problem) => {
            assert!(problem.contains(name));
            return;
        }
    };
    let mut resolver = Resolver::new("fuzz-env", "e-fuzz", Some("eu-west-1"));
    let mut settings: Vec<OptionSetting> = Vec::new();
    if let Some(value) = file.keys.get("option_settings") {
        let (found, problems) = option_settings(name, value, &resolver);
        assert!(problems.iter().all(|p| !p.is_empty()));
        for setting in &found {
            assert!(
                !setting.namespace.is_empty() && !setting.option.is_empty(),
                "{setting:?}"
            );
            assert_eq!(setting.file, name);
            resolver
                .options
                .entry(setting.key())
                .or_insert(setting.value.clone());
        }
        settings = found;
    }
    if let Err(problems) = server_keys(&file, &resolver) {
        assert!(!problems.is_empty());
    }
    for facts in [
        HostFacts::default(),
        HostFacts {
            proxy_enabled: true,
            publishing: true,
            controller: true,
            worker: true,
        },
    ] {
        let out = effects(&settings, facts);
        assert!(
            out.problems
                .iter()
                .chain(&out.warnings)
                .all(|p| !p.is_empty())
        );
    }
    let mut layer = ReleaseSettings::default();
    layer.apply_bundle(&settings);
    if let Some(path) = layer.health_path() {
        assert!(path.starts_with('/'), "health path {path:?}");
    }
});
