//! A small interpreter of the Amazon States Language for what template.yaml's
//! state machine uses (Task states on `arn:aws:states:::lambda:invoke` and
//! Map states, with Parameters, ItemSelector, ItemsPath, ResultSelector,
//! ResultPath, OutputPath, MaxConcurrencyPath; Retry is read and not
//! exercised). It runs the template's own definition against the real
//! function under the Lambda emulator, so the wiring between the steps is
//! tested, not assumed. A field it does not know fails the test, so the
//! interpreter cannot silently skip what Step Functions would do.

use serde_json::{Map, Value};

/// One state machine definition, its substitutions applied.
pub struct Machine {
    def: Value,
}

/// The context object (`$$`) of a state.
#[derive(Clone, Default)]
struct Context {
    execution_name: String,
    item: Option<(usize, Value)>,
}

const TASK_FIELDS: &[&str] = &[
    "Type",
    "Resource",
    "Parameters",
    "ResultSelector",
    "ResultPath",
    "OutputPath",
    "Retry",
    "Next",
    "End",
    "Comment",
];
const MAP_FIELDS: &[&str] = &[
    "Type",
    "ItemsPath",
    "ItemSelector",
    "ItemProcessor",
    "MaxConcurrency",
    "MaxConcurrencyPath",
    "ToleratedFailurePercentage",
    "ResultPath",
    "OutputPath",
    "Next",
    "End",
    "Comment",
];

impl Machine {
    /// `definition` with each `${name}` of `substitutions` replaced (as
    /// CloudFormation's DefinitionSubstitutions do).
    pub fn new(definition: &Value, substitutions: &[(&str, &str)]) -> Machine {
        let mut text = definition.to_string();
        for (k, v) in substitutions {
            text = text.replace(&format!("${{{k}}}"), v);
        }
        assert!(
            !text.contains("${"),
            "an unsubstituted placeholder in {text}"
        );
        Machine {
            def: serde_json::from_str(&text).unwrap(),
        }
    }

    /// Runs an execution named `name` on `input`; `invoke(function, payload)`
    /// is a Lambda invocation's answer. Returns the execution's output and
    /// the Map concurrency each Map state asked for.
    pub fn run(
        &self,
        name: &str,
        input: Value,
        invoke: &dyn Fn(&str, &Value) -> Value,
    ) -> (Value, Vec<u64>) {
        let ctx = Context {
            execution_name: name.into(),
            item: None,
        };
        let mut concurrency = Vec::new();
        let out = run_states(&self.def, input, &ctx, invoke, &mut concurrency);
        (out, concurrency)
    }
}

fn run_states(
    machine: &Value,
    mut state: Value,
    ctx: &Context,
    invoke: &dyn Fn(&str, &Value) -> Value,
    concurrency: &mut Vec<u64>,
) -> Value {
    let states = machine["States"].as_object().expect("States");
    let mut name = machine["StartAt"].as_str().expect("StartAt").to_string();
    loop {
        let s = &states[&name];
        let kind = s["Type"].as_str().expect("Type");
        let allowed = match kind {
            "Task" => TASK_FIELDS,
            "Map" => MAP_FIELDS,
            other => panic!("state {name}: type {other} is not interpreted"),
        };
        for k in s.as_object().unwrap().keys() {
            assert!(
                allowed.contains(&k.as_str()),
                "state {name}: field {k} is not interpreted"
            );
        }
        let result = match kind {
            "Task" => {
                assert_eq!(
                    s["Resource"], "arn:aws:states:::lambda:invoke",
                    "state {name}"
                );
                let params = resolve(&s["Parameters"], &state, ctx);
                let function = params["FunctionName"].as_str().expect("FunctionName");
                let answer = invoke(function, &params["Payload"]);
                let raw = serde_json::json!({"Payload": answer, "StatusCode": 200});
                match s.get("ResultSelector") {
                    Some(sel) => resolve(sel, &raw, ctx),
                    None => raw,
                }
            }
            _ => {
                let items = path(&state, s["ItemsPath"].as_str().unwrap_or("$"), ctx);
                let items = items
                    .as_array()
                    .expect("ItemsPath selects an array")
                    .clone();
                if let Some(p) = s.get("MaxConcurrencyPath") {
                    let c = path(&state, p.as_str().unwrap(), ctx);
                    concurrency.push(c.as_u64().expect("MaxConcurrencyPath selects an integer"));
                }
                let processor = &s["ItemProcessor"];
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let item_ctx = Context {
                            item: Some((i, item.clone())),
                            ..ctx.clone()
                        };
                        let input = match s.get("ItemSelector") {
                            Some(sel) => resolve(sel, &state, &item_ctx),
                            None => item,
                        };
                        run_states(processor, input, ctx, invoke, concurrency)
                    })
                    .collect::<Vec<Value>>()
                    .into()
            }
        };
        state = match s.get("ResultPath").and_then(Value::as_str) {
            None | Some("$") => result,
            Some(p) => {
                let field = p.strip_prefix("$.").expect("ResultPath $.field");
                assert!(
                    !field.contains('.'),
                    "nested ResultPath {p} is not interpreted"
                );
                state[field] = result;
                state
            }
        };
        if let Some(p) = s.get("OutputPath").and_then(Value::as_str) {
            state = path(&state, p, ctx);
        }
        if s["End"] == true {
            return state;
        }
        name = s["Next"].as_str().expect("Next or End").to_string();
    }
}

/// A template's `key.$` fields replaced by the path they name, recursively.
fn resolve(template: &Value, state: &Value, ctx: &Context) -> Value {
    match template {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                match k.strip_suffix(".$") {
                    Some(key) => {
                        out.insert(key.to_string(), path(state, v.as_str().unwrap(), ctx));
                    }
                    None => {
                        out.insert(k.clone(), resolve(v, state, ctx));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(v, state, ctx)).collect()),
        other => other.clone(),
    }
}

/// The value at a reference path: `$`, `$.a.b`, `$$.Execution.Name`,
/// `$$.Map.Item.Value`, `$$.Map.Item.Index`.
fn path(state: &Value, p: &str, ctx: &Context) -> Value {
    match p {
        "$$.Execution.Name" => return ctx.execution_name.clone().into(),
        "$$.Map.Item.Value" => return ctx.item.clone().expect("inside a Map").1,
        "$$.Map.Item.Index" => return ctx.item.clone().expect("inside a Map").0.into(),
        _ => {}
    }
    let rest = p
        .strip_prefix('$')
        .unwrap_or_else(|| panic!("path {p} is not interpreted"));
    let mut v = state;
    for field in rest.split('.').filter(|f| !f.is_empty()) {
        v = v
            .get(field)
            .unwrap_or_else(|| panic!("path {p}: no {field} in {v}"));
    }
    v.clone()
}
