//! The one table of environment variables: every `MOVIE_RECS_*` variable the
//! code reads, its default, what it does and which processes read it.
//! docs/configuration.md is checked against it by a test, and the emulator
//! tests check that template.yaml gives each function the stores it needs.

/// A kind of process: each Lambda function, the local server, the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Recommend,
    Trace,
    Rollout,
    Ingest,
    Audit,
    Canary,
    /// The batch recommendations of the Step Functions state machine.
    Batch,
    /// `movie-recs serve`: every route in one process.
    Serve,
    /// The other `movie-recs` commands.
    Cli,
}

impl Role {
    /// The seven Lambda functions.
    pub const FUNCTIONS: [Role; 7] = [
        Role::Recommend,
        Role::Trace,
        Role::Rollout,
        Role::Ingest,
        Role::Audit,
        Role::Canary,
        Role::Batch,
    ];

    /// The function's binary name (`recommend`, ...), `serve` or `cli`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Recommend => "recommend",
            Role::Trace => "trace",
            Role::Rollout => "rollout",
            Role::Ingest => "ingest",
            Role::Audit => "audit",
            Role::Canary => "canary",
            Role::Batch => "batch",
            Role::Serve => "serve",
            Role::Cli => "cli",
        }
    }

    /// The stores this role builds (and, in Lambda, must be configured).
    pub fn stores(self) -> &'static [Store] {
        use Store::*;
        match self {
            Role::Recommend => &[Registry, Traces, History, Rollout, Trending, Exposure],
            Role::Trace => &[Traces],
            Role::Rollout => &[Registry, Rollout, Traces, Lake, Metrics],
            Role::Ingest => &[Lake, IngestState, History, Trending],
            Role::Audit => &[Registry, Traces, Rollout, Lake, Reports, Metrics, Exposure],
            Role::Canary => &[Registry, Traces, Rollout, Lake, Metrics],
            Role::Batch => &[Registry, History, Rollout, Exposure, Batch],
            Role::Serve | Role::Cli => &Store::ALL,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One capability a process can be wired to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Store {
    Registry,
    Traces,
    History,
    Rollout,
    IngestState,
    Trending,
    Lake,
    Reports,
    Metrics,
    /// The exposure controller's adjustments.
    Exposure,
    /// Batch recommendation runs (and the user lists they read).
    Batch,
}

impl Store {
    pub const ALL: [Store; 11] = [
        Store::Registry,
        Store::Traces,
        Store::History,
        Store::Rollout,
        Store::IngestState,
        Store::Trending,
        Store::Lake,
        Store::Reports,
        Store::Metrics,
        Store::Exposure,
        Store::Batch,
    ];

    /// The variable that configures it.
    pub fn var(self) -> &'static str {
        match self {
            Store::Registry => "MOVIE_RECS_REGISTRY",
            Store::Traces => "MOVIE_RECS_TRACES_TABLE",
            Store::History => "MOVIE_RECS_HISTORY_TABLE",
            Store::Rollout => "MOVIE_RECS_ROLLOUT_TABLE",
            Store::IngestState => "MOVIE_RECS_INGEST_TABLE",
            Store::Trending => "MOVIE_RECS_TRENDING_TABLE",
            Store::Lake => "MOVIE_RECS_LAKE",
            Store::Reports => "MOVIE_RECS_REPORTS",
            Store::Metrics => "MOVIE_RECS_METRICS",
            Store::Exposure => "MOVIE_RECS_EXPOSURE",
            Store::Batch => "MOVIE_RECS_BATCH",
        }
    }

    /// What it holds, for error messages.
    pub fn what(self) -> &'static str {
        match self {
            Store::Registry => "model registry",
            Store::Traces => "trace store",
            Store::History => "user-history store",
            Store::Rollout => "rollout store",
            Store::IngestState => "ingest idempotency and rating-window store",
            Store::Trending => "trending counts store",
            Store::Lake => "event lake",
            Store::Reports => "audit report store",
            Store::Metrics => "metrics publisher",
            Store::Exposure => "exposure adjustments store",
            Store::Batch => "batch output store",
        }
    }

    /// What a Lambda function must be given: the value's expected form.
    pub fn lambda_form(self) -> &'static str {
        match self {
            Store::Registry | Store::Lake | Store::Reports | Store::Exposure | Store::Batch => {
                "an s3://bucket/prefix URL"
            }
            Store::Metrics => "\"cloudwatch\"",
            _ => "a DynamoDB table name",
        }
    }
}

/// How a variable is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Selects a store; required in Lambda by every role that builds the store.
    Store(Store),
    /// A setting with a default.
    Setting,
    /// Read only by the local server or the CLI.
    Local,
    /// Read at build time or by tests only.
    Build,
}

/// One environment variable.
#[derive(Clone, Copy, Debug)]
pub struct Var {
    pub name: &'static str,
    /// The default when unset (or what it means to leave it unset).
    pub default: &'static str,
    pub doc: &'static str,
    pub kind: Kind,
    /// The roles that read it.
    pub roles: &'static [Role],
}

use Role::{Audit, Batch, Canary, Cli, Ingest, Recommend, Rollout, Serve, Trace};

const ALL: &[Role] = &[
    Recommend, Trace, Rollout, Ingest, Audit, Canary, Batch, Serve, Cli,
];
const AUDIT_READERS: &[Role] = &[Audit, Canary, Rollout, Serve, Cli];
const CANARY_READERS: &[Role] = &[Canary, Rollout, Serve, Cli];

/// Every `MOVIE_RECS_*` variable.
pub const VARS: &[Var] = &[
    Var {
        name: "MOVIE_RECS_REGISTRY",
        default: "`.movie-recs/registry` (Lambda: required, `s3://bucket/models`)",
        doc: "Model registry: a folder or `s3://bucket/prefix`.",
        kind: Kind::Store(Store::Registry),
        roles: &[Recommend, Rollout, Audit, Canary, Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_MODEL_CACHE",
        default: "`/tmp/movie-recs-models`",
        doc: "Where versions fetched from S3 are kept, verified (in Lambda it must be under `/tmp`).",
        kind: Kind::Setting,
        roles: &[Recommend, Rollout, Audit, Canary, Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_TRACES_TABLE",
        default: "SQLite (`MOVIE_RECS_DB`) (Lambda: required)",
        doc: "DynamoDB table of recommendation traces.",
        kind: Kind::Store(Store::Traces),
        roles: &[Recommend, Trace, Rollout, Audit, Canary, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_ROLLOUT_TABLE",
        default: "SQLite (Lambda: required)",
        doc: "DynamoDB table of the rollout state and its change log.",
        kind: Kind::Store(Store::Rollout),
        roles: &[Recommend, Rollout, Audit, Canary, Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_HISTORY_TABLE",
        default: "SQLite (Lambda: required)",
        doc: "DynamoDB table of the movies users watched or rated since training.",
        kind: Kind::Store(Store::History),
        roles: &[Recommend, Ingest, Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_TRENDING_TABLE",
        default: "SQLite (Lambda: required)",
        doc: "DynamoDB table of watch and rate counts per movie per hour (`GET /trending`).",
        kind: Kind::Store(Store::Trending),
        roles: &[Recommend, Ingest, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_INGEST_TABLE",
        default: "SQLite (Lambda: required)",
        doc: "DynamoDB table of ingest's idempotency keys and rating windows.",
        kind: Kind::Store(Store::IngestState),
        roles: &[Ingest, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_LAKE",
        default: "`.movie-recs/lake` (Lambda: required, `s3://bucket/lake`)",
        doc: "Event lake: a folder or `s3://bucket/prefix`.",
        kind: Kind::Store(Store::Lake),
        roles: &[Rollout, Ingest, Audit, Canary, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_REPORTS",
        default: "`.movie-recs/reports` (Lambda: required, `s3://bucket/reports`)",
        doc: "Where the audit writes its reports.",
        kind: Kind::Store(Store::Reports),
        roles: &[Audit, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_EXPOSURE",
        default: "`.movie-recs/exposure` (Lambda: required, `s3://bucket/exposure`)",
        doc: "The exposure controller's adjustments (policy `exposure`): a folder or `s3://bucket/prefix`; the audit writes them, recommend reads them.",
        kind: Kind::Store(Store::Exposure),
        roles: &[Recommend, Audit, Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_BATCH",
        default: "`.movie-recs/batch` (Lambda: required, `s3://bucket/batch`)",
        doc: "Where the batch function writes each run (`<run>/part-*.parquet`, `manifest.json`) and reads user lists from.",
        kind: Kind::Store(Store::Batch),
        roles: &[Batch, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_METRICS",
        default: "`.movie-recs/metrics.jsonl` (Lambda: required, `cloudwatch`)",
        doc: "Where the audit, the canary and ingest publish metrics: `cloudwatch` or a JSON-lines file.",
        kind: Kind::Store(Store::Metrics),
        roles: &[Rollout, Audit, Canary, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_DB",
        default: "`.movie-recs/movie-recs.db`",
        doc: "The local SQLite file of every table store left unset (never used in Lambda).",
        kind: Kind::Local,
        roles: &[Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_STAGE",
        default: "`local`",
        doc: "The `Stage` dimension of published metrics (`dev`, `prod`).",
        kind: Kind::Setting,
        roles: &[Rollout, Audit, Canary, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_RELOAD_SECS",
        default: "`30` (`movie-recs serve`: `--reload-secs`, 5)",
        doc: "Seconds between checks for a new served version; the rollout function reports it as `effective_within_s`.",
        kind: Kind::Setting,
        roles: &[Recommend, Rollout],
    },
    Var {
        name: "MOVIE_RECS_POLICY",
        default: "`slots:slots=3`",
        doc: "Re-ranking policy of requests without `?policy=` (`name[:key=value]`).",
        kind: Kind::Setting,
        roles: &[Recommend, Batch, Serve],
    },
    Var {
        name: "MOVIE_RECS_TRACE_TTL_DAYS",
        default: "`30`",
        doc: "Days a recommendation trace is kept.",
        kind: Kind::Setting,
        roles: &[Recommend, Serve],
    },
    Var {
        name: "MOVIE_RECS_RATE_LIMIT_PER_HOUR",
        default: "`20`",
        doc: "Ratings one user may add per hour; the rest is quarantined (also the audit's velocity rule).",
        kind: Kind::Setting,
        roles: &[Ingest, Audit, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_DEDUP_TTL_DAYS",
        default: "`7`",
        doc: "Days ingest remembers an idempotency key.",
        kind: Kind::Setting,
        roles: &[Ingest, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_TOPIC_SUFFIXES",
        default: "`watch=.watch,rate=.rate,reco_response=.reco_responses`",
        doc: "Kafka topic suffix of each event type.",
        kind: Kind::Setting,
        roles: &[Ingest],
    },
    Var {
        name: "MOVIE_RECS_AUDIT_WINDOW_MINUTES",
        default: "`60`",
        doc: "Minutes of traces and events each scheduled audit reads.",
        kind: Kind::Setting,
        roles: &[Audit],
    },
    Var {
        name: "MOVIE_RECS_AUDIT_MIN_COVERAGE",
        default: "`0.40`",
        doc: "Audit threshold: catalogue coverage at least this.",
        kind: Kind::Setting,
        roles: AUDIT_READERS,
    },
    Var {
        name: "MOVIE_RECS_AUDIT_MAX_GINI",
        default: "`0.35`",
        doc: "Audit threshold: gini_exposed at most this.",
        kind: Kind::Setting,
        roles: AUDIT_READERS,
    },
    Var {
        name: "MOVIE_RECS_AUDIT_MAX_TOP_SHARE",
        default: "`0.30`",
        doc: "Audit threshold: top-10% share at most this.",
        kind: Kind::Setting,
        roles: AUDIT_READERS,
    },
    Var {
        name: "MOVIE_RECS_AUDIT_MIN_TAIL_SHARE",
        default: "`0.70`",
        doc: "Audit threshold: tail share at least this.",
        kind: Kind::Setting,
        roles: AUDIT_READERS,
    },
    Var {
        name: "MOVIE_RECS_ATTRIBUTION_HOURS",
        default: "`24`",
        doc: "A list converts when its user watches or rates one of its movies within this many hours.",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_RAMP",
        default: "`5,25,50`",
        doc: "Canary percentages, increasing.",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_MIN_PER_ARM",
        default: "`1000`",
        doc: "Lists each arm needs before the conversion test decides.",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_MAX_P95_REGRESSION",
        default: "`0.10`",
        doc: "The candidate's p95 may exceed the primary's by at most this share (+0.5 ms).",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_MAX_ERROR_RATE_INCREASE",
        default: "`0.01`",
        doc: "The candidate's error rate may exceed the primary's by at most this.",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_MIN_GUARDRAIL_REQUESTS",
        default: "`200`",
        doc: "Requests each arm needs before the error and latency guardrails judge.",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_CANARY_WINDOW_MINUTES",
        default: "`43200` (30 days)",
        doc: "Longest window a scheduled canary run judges (capped by the experiment's start).",
        kind: Kind::Setting,
        roles: CANARY_READERS,
    },
    Var {
        name: "MOVIE_RECS_ADMIN_TOKEN",
        default: "unset: admin routes refused",
        doc: "Bearer token of the local server's admin routes (in AWS, IAM guards them).",
        kind: Kind::Local,
        roles: &[Serve],
    },
    Var {
        name: "MOVIE_RECS_CLIENT_RATE_LIMIT",
        default: "`0` (no limit)",
        doc: "`movie-recs serve --client-rate-limit`: requests per minute per client address (429 with `Retry-After` beyond).",
        kind: Kind::Local,
        roles: &[Serve],
    },
    Var {
        name: "MOVIE_RECS_MAX_EVENT_AGE_DAYS",
        default: "`7`",
        doc: "HTTP and Kafka events older than this at arrival are refused with the reason (files may backfill).",
        kind: Kind::Setting,
        roles: &[Ingest, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_MAX_REQUEST_SPREAD_HOURS",
        default: "`6`",
        doc: "One `POST /events` request's events may span this many hours of event time; later ones are refused.",
        kind: Kind::Setting,
        roles: &[Ingest, Serve, Cli],
    },
    Var {
        name: "MOVIE_RECS_GIT_SHA",
        default: "`git rev-parse HEAD` at build time",
        doc: "The commit recorded in manifests and provenance (build time).",
        kind: Kind::Build,
        roles: &[],
    },
    Var {
        name: "MOVIE_RECS_CHART_DIR",
        default: "unset",
        doc: "Tests save the charts they render as PNG here, to look at.",
        kind: Kind::Build,
        roles: &[],
    },
];

/// The variable named `name`, if the table has it.
pub fn var(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// The variables `role` reads.
pub fn read_by(role: Role) -> impl Iterator<Item = &'static Var> {
    VARS.iter().filter(move |v| v.roles.contains(&role))
}

/// The variables a Lambda function must be given: the stores it builds.
pub fn required_in_lambda(role: Role) -> impl Iterator<Item = &'static str> {
    role.stores().iter().map(|s| s.var())
}

/// The table as Markdown (the body of docs/configuration.md's table).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | what | read by |\n|---|---|---|---|\n");
    for v in VARS {
        let roles: Vec<&str> = v.roles.iter().map(|r| r.name()).collect();
        let roles = if v.roles == ALL {
            "all".to_string()
        } else if roles.is_empty() {
            "build, tests".to_string()
        } else {
            roles.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            v.name, v.default, v.doc, roles
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_store_variable_is_in_the_table() {
        let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a variable is listed twice");
        for role in Role::FUNCTIONS {
            for s in role.stores() {
                let v = var(s.var()).unwrap_or_else(|| panic!("{} not in VARS", s.var()));
                assert_eq!(v.kind, Kind::Store(*s));
                assert!(
                    v.roles.contains(&role),
                    "{} builds {:?} but VARS says it does not read {}",
                    role,
                    s,
                    v.name
                );
            }
        }
    }
}
