//! template.yaml against the code: every `MOVIE_RECS_*` variable the code
//! reads is in the one table (shared::config::vars) and documented in
//! docs/configuration.md with its default; the template gives every function
//! the stores it builds and no variable it does not read; a function missing
//! a store variable refuses to start, naming it; and the template's
//! operational guarantees (alarms that notify, retention, bounds) hold.

mod common;

use common::template::{Resolver, Template};
use common::{repo_root, workspace_bin};
use serde_yaml::Value;
use shared::config::vars::{self, Role, VARS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn role_of(binary: &str) -> Role {
    Role::FUNCTIONS
        .into_iter()
        .find(|r| r.name() == binary)
        .unwrap_or_else(|| panic!("no role for binary {binary}"))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `"MOVIE_RECS_..."` string literal in the product's source.
fn variables_in_code() -> BTreeMap<String, String> {
    let root = repo_root();
    let mut files = Vec::new();
    for d in ["shared", "cli", "trainer", "functions"] {
        rust_files(&root.join(d), &mut files);
    }
    let mut found = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("\"MOVIE_RECS_") {
            let tail = &rest[i + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            if tail[end..].starts_with('"') {
                found
                    .entry(tail[..end].to_string())
                    .or_insert_with(|| f.strip_prefix(&root).unwrap().display().to_string());
            }
            rest = &tail[end..];
        }
    }
    found
}

#[test]
fn every_variable_the_code_reads_is_in_the_table_and_documented_with_its_default() {
    let code = variables_in_code();
    for (name, file) in &code {
        assert!(
            vars::var(name).is_some(),
            "{file} reads {name}, which shared/src/config/vars.rs does not list"
        );
    }
    for v in VARS {
        assert!(
            code.contains_key(v.name),
            "{} is listed in vars.rs but no code reads it",
            v.name
        );
        assert!(!v.default.is_empty(), "{} has no default", v.name);
    }
    let doc = std::fs::read_to_string(repo_root().join("docs/configuration.md")).unwrap();
    let table = vars::markdown_table();
    if !doc.contains(&table) {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("configuration-table.md");
        std::fs::write(&out, &table).unwrap();
        panic!(
            "docs/configuration.md does not hold the table of shared::config::vars: the current one is in {}",
            out.display()
        );
    }
}

fn default_resolver(tpl: &Template) -> Resolver<'_> {
    Resolver::new(tpl)
        .with_physical("DataBucket", "bucket")
        .with_physical("TracesTable", "traces")
        .with_physical("RolloutTable", "rollout")
        .with_physical("HistoryTable", "history")
        .with_physical("IngestTable", "ingest")
}

/// The template's environment of `binary`'s function, with what Lambda sets.
fn lambda_env(tpl: &Template, binary: &str) -> BTreeMap<String, String> {
    let r = default_resolver(tpl);
    let def = tpl.function_by_binary(binary);
    let mut env = r.environment(&def.logical_id);
    env.extend(r.lambda_environment(&def.logical_id));
    env
}

#[test]
fn the_template_gives_each_function_its_stores_and_only_variables_it_reads() {
    let tpl = Template::load();
    let defs = tpl.functions();
    let binaries: BTreeSet<&str> = defs.iter().map(|d| d.binary.as_str()).collect();
    let roles: BTreeSet<&str> = Role::FUNCTIONS.iter().map(|r| r.name()).collect();
    assert_eq!(
        binaries, roles,
        "template functions and Role::FUNCTIONS differ"
    );
    for def in &defs {
        let role = role_of(&def.binary);
        let env = lambda_env(&tpl, &def.binary);
        for var in vars::required_in_lambda(role) {
            assert!(
                env.contains_key(var),
                "{}: the {role} function builds the store {var} selects, but template.yaml does not set it",
                def.logical_id
            );
        }
        for k in env.keys().filter(|k| k.starts_with("MOVIE_RECS_")) {
            let v = vars::var(k).unwrap_or_else(|| {
                panic!(
                    "{}: template.yaml sets {k}, which no code reads",
                    def.logical_id
                )
            });
            assert!(
                v.roles.contains(&role),
                "{}: template.yaml sets {k}, which the {role} function does not read",
                def.logical_id
            );
        }
        // What the function does with that environment at init.
        let s = shared::config::Settings::from_lookup(|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{}: {e}", def.logical_id));
        assert!(s.in_lambda);
        shared::wiring::check_lambda(role, &s)
            .unwrap_or_else(|e| panic!("{}: {e}", def.logical_id));
    }
}

#[test]
fn a_function_missing_a_store_variable_refuses_to_start_naming_it_and_the_function() {
    let tpl = Template::load();
    for role in Role::FUNCTIONS {
        let full = lambda_env(&tpl, role.name());
        for var in vars::required_in_lambda(role) {
            let mut env = full.clone();
            env.remove(var);
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new(workspace_bin(role.name()))
                .env_clear()
                .envs(&env)
                .current_dir(dir.path())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{role} started without {var}: {err}");
            assert!(
                err.contains(var) && err.contains(&format!("the {role} function")),
                "{role} without {var} said: {err}"
            );
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{role} wrote in its working directory"
            );
        }
    }
}

trait Tagged {
    fn is_tagged_value(&self) -> bool;
}

impl Tagged for Value {
    fn is_tagged_value(&self) -> bool {
        matches!(self, Value::Tagged(_))
    }
}

fn props(r: &Value) -> &Value {
    &r["Properties"]
}

fn tag_is(v: &Value, tag: &str, arg: &str) -> bool {
    matches!(v, Value::Tagged(t) if t.tag == tag && t.value.as_str() == Some(arg))
}

#[test]
fn alarms_notify_and_every_function_is_watched_retained_and_bounded() {
    let tpl = Template::load();
    let resources = tpl.resources();
    let of_type = |t: &str| -> Vec<(String, Value)> {
        resources
            .iter()
            .filter(|(_, r)| r["Type"] == t)
            .cloned()
            .collect()
    };
    // The alarm topic is encrypted with a key of this template whose
    // policy lets CloudWatch publish (the AWS-managed SNS key cannot).
    let topic = tpl.resource("AlarmTopic");
    let key_ref = &props(&topic)["KmsMasterKeyId"];
    assert!(tag_is(key_ref, "!Ref", "EncryptionKey"), "{key_ref:?}");
    let key = tpl.resource("EncryptionKey");
    assert_eq!(props(&key)["EnableKeyRotation"], Value::Bool(true));
    let statements = props(&key)["KeyPolicy"]["Statement"].as_sequence().unwrap();
    assert!(statements.iter().any(|s| {
        s["Principal"]["Service"] == "cloudwatch.amazonaws.com"
            && s["Action"]
                .as_sequence()
                .is_some_and(|a| a.iter().any(|x| x == "kms:GenerateDataKey*"))
    }));
    // Every alarm notifies the topic.
    let alarms = of_type("AWS::CloudWatch::Alarm");
    for (id, a) in &alarms {
        let actions = props(a)["AlarmActions"].as_sequence().unwrap();
        assert!(
            actions.iter().any(|x| tag_is(x, "!Ref", "AlarmTopic")),
            "{id} notifies nobody"
        );
    }
    let watched = |metric: &str, function: &str| {
        alarms.iter().any(|(_, a)| {
            let p = props(a);
            p["Namespace"] == "AWS/Lambda"
                && p["MetricName"] == metric
                && p["Dimensions"][0]["Name"] == "FunctionName"
                && tag_is(&p["Dimensions"][0]["Value"], "!Ref", function)
        })
    };
    for def in tpl.functions() {
        let f = tpl.resource(&def.logical_id);
        let p = props(&f);
        for m in ["Errors", "Throttles"] {
            assert!(
                watched(m, &def.logical_id),
                "no {m} alarm on {}",
                def.logical_id
            );
        }
        assert!(
            matches!(&p["ReservedConcurrentExecutions"], Value::Tagged(t) if t.tag == "!Ref"),
            "{}: reserved concurrency must be a parameter",
            def.logical_id
        );
        let logging = &p["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{}", def.logical_id);
        let Value::Tagged(group) = &logging["LogGroup"] else {
            panic!("{} logs to no declared log group", def.logical_id)
        };
        let lg = tpl.resource(group.value.as_str().unwrap());
        assert!(
            tag_is(&props(&lg)["RetentionInDays"], "!Ref", "LogRetentionDays"),
            "{}'s log group keeps logs forever",
            def.logical_id
        );
    }
    // Scheduled functions: a dead-letter queue for the schedule and for
    // the function's own failed (asynchronous) runs.
    for id in ["AuditFunction", "CanaryFunction"] {
        let p = props(&tpl.resource(id)).clone();
        assert!(p["DeadLetterQueue"]["TargetArn"].is_tagged_value(), "{id}");
        let ev = &p["Events"]["Schedule"]["Properties"];
        assert!(
            ev["DeadLetterConfig"]["Arn"].is_tagged_value(),
            "{id}: schedule without DLQ"
        );
        assert!(ev["RetryPolicy"]["MaximumRetryAttempts"].is_number());
    }
    // Kafka sources cannot wedge a partition.
    for (id, m) in of_type("AWS::Lambda::EventSourceMapping") {
        let p = props(&m);
        for k in [
            "MaximumRetryAttempts",
            "MaximumRecordAgeInSeconds",
            "ProvisionedPollerConfig",
        ] {
            assert!(!p[k].is_null(), "{id} has no {k}");
        }
        assert!(
            p["DestinationConfig"]["OnFailure"]["Destination"].is_tagged_value(),
            "{id}"
        );
        assert!(alarms
            .iter()
            .any(|(_, a)| props(a)["MetricName"] == "OffsetLag"));
    }
    // Stateful resources survive a stack deletion.
    for t in [
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
    ] {
        for (id, r) in of_type(t) {
            assert_eq!(r["DeletionPolicy"], "Retain", "{id} ({t})");
            assert_eq!(r["UpdateReplacePolicy"], "Retain", "{id} ({t})");
        }
    }
    // Bad parameter values are refused at deploy time.
    for (name, p) in tpl.parameters() {
        let bounded = match p["Type"].as_str() {
            Some("Number") => !p["AllowedValues"].is_null() || (!p["MinValue"].is_null()),
            Some("String") => !p["AllowedValues"].is_null() || !p["AllowedPattern"].is_null(),
            _ => true,
        };
        assert!(bounded, "parameter {name} accepts anything");
    }
}

/// No anonymous route writes data or reads a person's data: every POST and
/// every route but `/healthz` takes IAM or an API key; the list routes
/// (`/recommend`, `/similar`, `/popular`, `/trending`) take an API key under a usage plan with a throttle and a quota; the WAF is an
/// option, off by default.
#[test]
fn no_anonymous_route_writes_data_or_reads_a_persons_data() {
    let tpl = Template::load();
    let mut routes = Vec::new();
    for def in tpl.functions() {
        let f = tpl.resource(&def.logical_id);
        // A function without events (the batch one, invoked by its state
        // machine) has no route.
        let Some(events) = props(&f)["Events"].as_mapping() else {
            continue;
        };
        for (name, ev) in events {
            if ev["Type"] != "Api" {
                continue;
            }
            let p = &ev["Properties"];
            let path = p["Path"].as_str().unwrap().to_string();
            let method = p["Method"].as_str().unwrap().to_ascii_uppercase();
            let iam = p["Auth"]["Authorizer"] == "AWS_IAM";
            let key = p["Auth"]["ApiKeyRequired"] == Value::Bool(true);
            routes.push((method.clone(), path.clone()));
            match path.as_str() {
                "/healthz" => assert!(!iam && !key, "/healthz stays public"),
                // The list routes of client apps: an API key under the plan.
                "/recommend/{user_id}"
                | "/similar/{movie_id}"
                | "/popular"
                | "/trending"
                | "/openapi.json" => {
                    assert!(key || iam, "{name:?}: {method} {path} is anonymous")
                }
                _ => assert!(iam, "{name:?}: {method} {path} does not take IAM"),
            }
        }
    }
    for want in [
        ("POST", "/events"),
        ("GET", "/health"),
        ("GET", "/healthz"),
        ("GET", "/similar/{movie_id}"),
        ("GET", "/popular"),
        ("GET", "/trending"),
        ("GET", "/openapi.json"),
    ] {
        assert!(
            routes.iter().any(|(m, p)| m == want.0 && p == want.1),
            "{want:?} is not routed"
        );
    }
    // The contract and the deployment name the same routes: every routed
    // one is in /openapi.json, and every documented one is routed but the
    // local server's Prometheus page (Lambda publishes EMF instead).
    let doc: Value = serde_yaml::from_str(shared::http::openapi::document()).unwrap();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in ops.as_mapping().unwrap() {
            let m = method.as_str().unwrap().to_ascii_uppercase();
            documented.push((m, path.as_str().unwrap().to_string()));
        }
    }
    for r in &routes {
        assert!(
            documented.contains(r),
            "{r:?} is deployed but not in /openapi.json"
        );
    }
    for d in &documented {
        assert!(
            routes.contains(d) || d == &("GET".to_string(), "/metrics".to_string()),
            "{d:?} is documented but API Gateway does not route it"
        );
    }
    let api = tpl.resource("Api");
    let plan = &props(&api)["Auth"]["UsagePlan"];
    assert_eq!(plan["CreateUsagePlan"], "PER_API");
    assert!(
        plan["Throttle"]["RateLimit"].is_tagged_value() && plan["Quota"]["Limit"].is_tagged_value()
    );
    assert_eq!(tpl.parameter_default("EnableWaf").as_deref(), Some("false"));
    let acl = tpl.resource("WebAcl");
    assert_eq!(acl["Condition"], "WafEnabled");
    let rule = &props(&acl)["Rules"][0]["Statement"]["RateBasedStatement"];
    assert_eq!(rule["AggregateKeyType"], "IP");
}
