//! The CloudFormation functions a configuration file may use where a host can answer them:
//! `Ref` of the environment's own names, `Fn::GetOptionSetting` and `Fn::Join` of those,
//! also inside EB's backtick strings (`` "`{"Ref": "AWSEBEnvironmentName"}`" ``). Anything
//! that names a real AWS resource (`Fn::GetAtt`, `Fn::ImportValue`, `Ref` of a resource) is
//! refused by name: a host cannot know it. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

/// What functions resolve against.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// `Ref` targets: `AWSEBEnvironmentName`, `AWSEBEnvironmentId`, `AWS::Region`, …
    pub refs: BTreeMap<String, String>,
    /// `namespace:option` → value, for `Fn::GetOptionSetting`.
    pub options: BTreeMap<String, String>,
}

impl Resolver {
    pub fn new(environment_name: &str, environment_id: &str, region: Option<&str>) -> Self {
        let mut refs = BTreeMap::from([
            (
                "AWSEBEnvironmentName".to_string(),
                environment_name.to_string(),
            ),
            ("AWSEBEnvironmentId".to_string(), environment_id.to_string()),
            (
                "AWS::StackName".to_string(),
                format!("awseb-{environment_id}-stack"),
            ),
        ]);
        if let Some(region) = region {
            refs.insert("AWS::Region".to_string(), region.to_string());
        }
        Self {
            refs,
            options: BTreeMap::new(),
        }
    }

    /// `value` with every function replaced by its result; `at` names it in errors.
    pub fn resolve(&self, value: &Value, at: &str) -> Result<Value, String> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (name, argument) = map.iter().next().expect("one entry");
                if name == "Ref" || name.starts_with("Fn::") {
                    return self.function(name, argument, at).map(Value::String);
                }
                self.resolve_map(map, at)
            }
            Value::Object(map) => self.resolve_map(map, at),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.resolve(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::String(text)
                if text.len() > 2 && text.starts_with('`') && text.ends_with('`') =>
            {
                match serde_json::from_str::<Value>(&text[1..text.len() - 1]) {
                    Ok(inner @ Value::Object(_)) => self.resolve(&inner, at),
                    _ => Ok(value.clone()),
                }
            }
            _ => Ok(value.clone()),
        }
    }

    fn resolve_map(&self, map: &serde_json::Map<String, Value>, at: &str) -> Result<Value, String> {
        let mut out = serde_json::Map::new();
        for (key, value) in map {
            out.insert(key.clone(), self.resolve(value, &format!("{at}.{key}"))?);
        }
        Ok(Value::Object(out))
    }

    fn function(&self, name: &str, argument: &Value, at: &str) -> Result<String, String> {
        match (name, argument) {
            ("Ref", Value::String(target)) => self.refs.get(target).cloned().ok_or_else(|| {
                format!(
                    "{at}: Ref {target:?} names an AWS resource or parameter a host cannot resolve (it resolves AWSEBEnvironmentName, AWSEBEnvironmentId, AWS::Region and AWS::StackName)"
                )
            }),
            ("Fn::GetOptionSetting", Value::Object(args)) => {
                let text = |key: &str| args.get(key).and_then(Value::as_str);
                let namespace = text("Namespace").unwrap_or("aws:elasticbeanstalk:customoption");
                let Some(option) = text("OptionName") else {
                    return Err(format!("{at}: Fn::GetOptionSetting needs an OptionName"));
                };
                match self.options.get(&format!("{namespace}:{option}")) {
                    Some(value) => Ok(value.clone()),
                    None => text("DefaultValue").map(String::from).ok_or_else(|| {
                        format!(
                            "{at}: Fn::GetOptionSetting: option {namespace}:{option} is not set and has no DefaultValue"
                        )
                    }),
                }
            }
            ("Fn::Join", Value::Array(args)) => match args.as_slice() {
                [Value::String(separator), Value::Array(parts)] => {
                    let mut texts = Vec::new();
                    for (i, part) in parts.iter().enumerate() {
                        match self.resolve(part, &format!("{at}.Fn::Join[{i}]"))? {
                            Value::String(text) => texts.push(text),
                            Value::Number(n) => texts.push(n.to_string()),
                            Value::Bool(b) => texts.push(b.to_string()),
                            _ => return Err(format!("{at}: Fn::Join joins strings")),
                        }
                    }
                    Ok(texts.join(separator))
                }
                _ => Err(format!("{at}: Fn::Join takes [separator, [values]]")),
            },
            _ => Err(format!(
                "{at}: {name} cannot be resolved on a host (it needs the environment's CloudFormation stack); set the value itself or an environment property"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refs_option_lookups_and_joins_resolve_and_real_resources_are_refused_by_name() {
        let mut resolver = Resolver::new("web-prod", "e-abc", Some("eu-west-1"));
        resolver.options.insert(
            "aws:elasticbeanstalk:customoption:Tier".to_string(),
            "gold".to_string(),
        );
        let value = json!({
            "a": {"Ref": "AWSEBEnvironmentName"},
            "b": {"Fn::Join": ["-", [{"Ref": "AWS::Region"}, {"Fn::GetOptionSetting": {"OptionName": "Tier"}}, 3]]},
            "c": {"Fn::GetOptionSetting": {"OptionName": "Missing", "DefaultValue": "none"}},
            "d": "`{\"Ref\": \"AWSEBEnvironmentId\"}`",
            "e": "`plain backticks`",
        });
        assert_eq!(
            resolver
                .resolve(&value, "files./a.content")
                .expect("resolves"),
            json!({"a": "web-prod", "b": "eu-west-1-gold-3", "c": "none", "d": "e-abc", "e": "`plain backticks`"})
        );
        let error = resolver
            .resolve(
                &json!({"Fn::GetAtt": ["Queue", "Arn"]}),
                "option_settings[0].value",
            )
            .expect_err("refused");
        assert!(
            error.starts_with("option_settings[0].value: Fn::GetAtt cannot be resolved on a host"),
            "{error}"
        );
        let error = resolver
            .resolve(&json!({"Ref": "AWSEBSecurityGroup"}), "x")
            .expect_err("refused");
        assert!(error.contains("Ref \"AWSEBSecurityGroup\""), "{error}");
    }
}
