//! template.yaml as the one source of the functions' configuration: each
//! function's environment is what the template gives it (Globals merged with
//! its own), with `!Ref`, `!Sub`, `!GetAtt` and `!If` resolved against the
//! emulator's resource names and the parameters' defaults (or a test's
//! parameter overrides, as `sam deploy --parameter-overrides` would). What
//! Lambda itself sets (the function name, memory, log format) comes from the
//! template too.
#![allow(dead_code)]

use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The parsed template.
pub struct Template {
    doc: Value,
}

/// One `AWS::Serverless::Function`.
#[derive(Clone, Debug)]
pub struct FunctionDef {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the workspace binary.
    pub binary: String,
}

/// Resolves intrinsic functions for one emulated deployment.
pub struct Resolver<'a> {
    template: &'a Template,
    /// Physical names of resources (`DataBucket` -> the emulator's bucket).
    pub physical: HashMap<String, String>,
    pub params: HashMap<String, String>,
}

fn key(v: &Value, k: &str) -> Value {
    v.get(k).cloned().unwrap_or(Value::Null)
}

fn as_map(v: &Value) -> Vec<(String, Value)> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                .collect()
        })
        .unwrap_or_default()
}

impl Template {
    pub fn load() -> Template {
        let path = super::repo_root().join("template.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Template { doc }
    }

    pub fn resources(&self) -> Vec<(String, Value)> {
        as_map(&key(&self.doc, "Resources"))
    }

    pub fn resource(&self, logical_id: &str) -> Value {
        let r = key(&key(&self.doc, "Resources"), logical_id);
        assert!(!r.is_null(), "template.yaml has no resource {logical_id}");
        r
    }

    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let p = key(&key(&self.doc, "Parameters"), name);
        if p.is_null() {
            return None;
        }
        Some(scalar(&key(&p, "Default")).unwrap_or_default())
    }

    pub fn parameters(&self) -> Vec<(String, Value)> {
        as_map(&key(&self.doc, "Parameters"))
    }

    /// Every function, in template order.
    pub fn functions(&self) -> Vec<FunctionDef> {
        self.resources()
            .into_iter()
            .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
            .map(|(id, r)| FunctionDef {
                binary: r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"))
                    .to_string(),
                logical_id: id,
            })
            .collect()
    }

    pub fn function_by_binary(&self, binary: &str) -> FunctionDef {
        self.functions()
            .into_iter()
            .find(|f| f.binary == binary)
            .unwrap_or_else(|| panic!("template.yaml has no function built from {binary}"))
    }

    /// A function property, falling back to `Globals.Function`.
    pub fn function_property(&self, logical_id: &str, prop: &str) -> Value {
        let own = key(&key(&self.resource(logical_id), "Properties"), prop);
        if !own.is_null() {
            return own;
        }
        key(&key(&key(&self.doc, "Globals"), "Function"), prop)
    }

    /// The raw environment (Globals merged with the function's own).
    pub fn raw_environment(&self, logical_id: &str) -> Vec<(String, Value)> {
        let globals = key(
            &key(&key(&key(&self.doc, "Globals"), "Function"), "Environment"),
            "Variables",
        );
        let own = key(
            &key(
                &key(&self.resource(logical_id), "Properties"),
                "Environment",
            ),
            "Variables",
        );
        let mut merged: BTreeMap<String, Value> = as_map(&globals).into_iter().collect();
        merged.extend(as_map(&own));
        merged.into_iter().collect()
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<'a> Resolver<'a> {
    pub fn new(template: &'a Template) -> Self {
        Resolver {
            template,
            physical: HashMap::new(),
            params: HashMap::new(),
        }
    }

    pub fn with_physical(mut self, logical: &str, physical: impl Into<String>) -> Self {
        self.physical.insert(logical.into(), physical.into());
        self
    }

    pub fn with_param(mut self, name: &str, value: impl Into<String>) -> Self {
        assert!(
            self.template.parameter_default(name).is_some(),
            "template.yaml has no parameter {name}"
        );
        self.params.insert(name.into(), value.into());
        self
    }

    fn param(&self, name: &str) -> Option<String> {
        self.params
            .get(name)
            .cloned()
            .or_else(|| self.template.parameter_default(name))
    }

    /// `!Ref name`.
    pub fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => return Some(REGION.into()),
            "AWS::AccountId" => return Some(ACCOUNT.into()),
            "AWS::Partition" => return Some("aws".into()),
            "AWS::StackName" => return Some("movie-recs-emulated".into()),
            "AWS::NoValue" => return None,
            _ => {}
        }
        if let Some(p) = self.param(name) {
            return Some(p);
        }
        if let Some(p) = self.physical.get(name) {
            return Some(p.clone());
        }
        let r = self.template.resource(name);
        // A named resource's physical name is its name property.
        for prop in [
            "FunctionName",
            "TableName",
            "BucketName",
            "LogGroupName",
            "QueueName",
            "TopicName",
        ] {
            let v = key(&key(&r, "Properties"), prop);
            if !v.is_null() {
                return self.resolve(&v);
            }
        }
        panic!("the emulator does not know the physical name of {name}: add it to the harness");
    }

    /// `!GetAtt logical.attribute`.
    pub fn get_att(&self, path: &str) -> String {
        let (logical, attr) = path.split_once('.').unwrap_or((path, "Arn"));
        let name = self.reference(logical).unwrap_or_default();
        match attr {
            "Arn" => format!("arn:aws:emulated:{REGION}:{ACCOUNT}:{logical}/{name}"),
            _ => name,
        }
    }

    fn condition(&self, name: &str) -> bool {
        let c = key(&key(&self.template.doc, "Conditions"), name);
        assert!(!c.is_null(), "template.yaml has no condition {name}");
        self.truth(&c)
    }

    fn truth(&self, v: &Value) -> bool {
        let Value::Tagged(t) = v else {
            panic!("a condition must be a function, got {v:?}")
        };
        let args = t.value.as_sequence().cloned().unwrap_or_default();
        match t.tag.to_string().as_str() {
            "!Equals" => self.resolve(&args[0]) == self.resolve(&args[1]),
            "!Not" => !self.truth(&args[0]),
            "!And" => args.iter().all(|a| self.truth(a)),
            "!Or" => args.iter().any(|a| self.truth(a)),
            "!Condition" => self.condition(t.value.as_str().unwrap()),
            other => panic!("condition function {other} is not emulated"),
        }
    }

    fn sub(&self, text: &str, vars: &HashMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let j = after.find('}').expect("unclosed ${ in !Sub");
            let name = &after[..j];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(lit);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if name.contains('.') {
                out.push_str(&self.get_att(name));
            } else {
                out.push_str(&self.reference(name).unwrap_or_default());
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        out
    }

    /// A value with its intrinsic functions resolved; `None` for `AWS::NoValue`.
    pub fn resolve(&self, v: &Value) -> Option<String> {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                match tag.as_str() {
                    "!Ref" => self.reference(t.value.as_str().unwrap()),
                    "!GetAtt" => Some(match &t.value {
                        Value::String(s) => self.get_att(s),
                        Value::Sequence(p) => self.get_att(&format!(
                            "{}.{}",
                            p[0].as_str().unwrap(),
                            p[1].as_str().unwrap()
                        )),
                        other => panic!("!GetAtt {other:?}"),
                    }),
                    "!Sub" => Some(match &t.value {
                        Value::String(s) => self.sub(s, &HashMap::new()),
                        Value::Sequence(p) => {
                            let vars = as_map(&p[1])
                                .into_iter()
                                .map(|(k, v)| (k, self.resolve(&v).unwrap_or_default()))
                                .collect();
                            self.sub(p[0].as_str().unwrap(), &vars)
                        }
                        other => panic!("!Sub {other:?}"),
                    }),
                    "!If" => {
                        let a = t.value.as_sequence().unwrap();
                        let branch = if self.condition(a[0].as_str().unwrap()) {
                            &a[1]
                        } else {
                            &a[2]
                        };
                        self.resolve(branch)
                    }
                    "!Join" => {
                        let a = t.value.as_sequence().unwrap();
                        let sep = a[0].as_str().unwrap_or("");
                        let parts: Vec<String> = match &a[1] {
                            Value::Sequence(items) => {
                                items.iter().filter_map(|i| self.resolve(i)).collect()
                            }
                            other => vec![self.resolve(other).unwrap_or_default()],
                        };
                        Some(parts.join(sep))
                    }
                    other => panic!("intrinsic {other} is not emulated"),
                }
            }
            other => scalar(other),
        }
    }

    /// The environment template.yaml gives `logical_id`, resolved.
    pub fn environment(&self, logical_id: &str) -> BTreeMap<String, String> {
        self.template
            .raw_environment(logical_id)
            .into_iter()
            .filter_map(|(k, v)| Some((k, self.resolve(&v)?)))
            .collect()
    }

    /// What the Lambda service sets for the function, from its properties:
    /// name, version, memory, and (with `LoggingConfig.LogFormat: JSON`) the
    /// log format and level the runtime's subscriber reads.
    pub fn lambda_environment(&self, logical_id: &str) -> BTreeMap<String, String> {
        let t = self.template;
        let name = self.reference(logical_id).unwrap();
        let memory = self
            .resolve(&t.function_property(logical_id, "MemorySize"))
            .unwrap_or_else(|| "128".into());
        let mut env = BTreeMap::from([
            ("AWS_LAMBDA_FUNCTION_NAME".to_string(), name),
            (
                "AWS_LAMBDA_FUNCTION_VERSION".to_string(),
                "$LATEST".to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_string(), memory),
            ("AWS_REGION".to_string(), REGION.to_string()),
            ("AWS_DEFAULT_REGION".to_string(), REGION.to_string()),
            ("TZ".to_string(), ":UTC".to_string()),
        ]);
        let logging = t.function_property(logical_id, "LoggingConfig");
        if let Some(format) = self.resolve(&key(&logging, "LogFormat")) {
            env.insert("AWS_LAMBDA_LOG_FORMAT".into(), format.clone());
            if format == "JSON" {
                let level = self
                    .resolve(&key(&logging, "ApplicationLogLevel"))
                    .unwrap_or_else(|| "INFO".into());
                env.insert("AWS_LAMBDA_LOG_LEVEL".into(), level);
            }
        }
        env
    }
}
