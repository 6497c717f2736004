//! The GitHub plugin: turns GitHub webhook deliveries into `github.<event>[.<action>]` events.
//!
//! The host checks `X-Hub-Signature-256` before this code runs. Parsing reads only the fields
//! the summary needs (serde skips the rest without building a tree), and the event data embeds
//! the original payload bytes untouched next to the summary.

use serde::Deserialize;
use serde::de::IgnoredAny;
use wasmhook_plugin_sdk::{
    BodyHmac, Event, Header, MacEncoding, Manifest, Outcome, Plugin, Refusal, RejectionKind, Reply,
    Request, SignatureScheme, SourceSettings, export_plugin,
};

/// The GitHub plugin.
pub struct GitHub;

export_plugin!(GitHub);

const DELIVERY_HEADER: &str = "x-github-delivery";
const EVENT_HEADER: &str = "x-github-event";

#[derive(Deserialize, Default)]
#[serde(default)]
struct Payload {
    action: Option<String>,
    repository: Option<Repository>,
    organization: Option<Account>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    commits: Option<Vec<IgnoredAny>>,
    pusher: Option<Pusher>,
    number: Option<u64>,
    pull_request: Option<PullRequest>,
    issue: Option<Issue>,
    release: Option<Release>,
    workflow_run: Option<WorkflowRun>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct Pusher {
    name: String,
}

#[derive(Deserialize)]
struct BranchRef {
    #[serde(rename = "ref")]
    git_ref: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    head: BranchRef,
    base: BranchRef,
    merged: Option<bool>,
    title: Option<String>,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    title: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct Release {
    tag_name: String,
    name: Option<String>,
    draft: Option<bool>,
    prerelease: Option<bool>,
}

#[derive(Deserialize)]
struct WorkflowRun {
    id: u64,
    name: Option<String>,
    head_branch: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
}

impl Plugin for GitHub {
    fn describe() -> Manifest {
        Manifest {
            name: "github".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "GitHub repository, organization and app webhooks.".to_owned(),
            signature: SignatureScheme::BodyHmac(BodyHmac {
                header: "x-hub-signature-256".to_owned(),
                prefix: "sha256=".to_owned(),
                encoding: MacEncoding::Hex,
            }),
            dedupe_header: Some(DELIVERY_HEADER.to_owned()),
            event_types: vec![
                "github.push".to_owned(),
                "github.pull_request.*".to_owned(),
                "github.issues.*".to_owned(),
                "github.release.*".to_owned(),
                "github.workflow_run.*".to_owned(),
                "github.*".to_owned(),
            ],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        wasmhook_plugin_sdk::settings_without_configuration(config, Self::describe())
    }

    fn handle(request: Request) -> Outcome {
        Outcome::or_refusal(normalize(&request))
    }
}

fn malformed(reason: impl Into<String>) -> Refusal {
    (RejectionKind::Malformed, reason.into())
}

fn invalid(reason: impl Into<String>) -> Refusal {
    (RejectionKind::Invalid, reason.into())
}

/// Normalizes one delivery: the plain-Rust heart of the plugin, called natively by tests and
/// benchmarks and through the component export in production.
pub fn normalize(request: &Request) -> Result<Outcome, Refusal> {
    let event_name = request
        .header(EVENT_HEADER)
        .ok_or_else(|| malformed("missing the X-GitHub-Event header"))?;
    if event_name.is_empty()
        || !event_name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
    {
        return Err(malformed(format!(
            "X-GitHub-Event {event_name:?} is not an event name"
        )));
    }
    let delivery_id = request
        .header(DELIVERY_HEADER)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| malformed("missing the X-GitHub-Delivery header"))?;
    if request.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(malformed(
            "the body is not a JSON object (set the webhook's content type to application/json)",
        ));
    }
    let payload: Payload = serde_json::from_slice(&request.body)
        .map_err(|error| malformed(format!("the body is not valid JSON: {error}")))?;

    if event_name == "ping" {
        return Ok(Outcome::Reply(Reply {
            status: 200,
            headers: vec![Header {
                name: "content-type".to_owned(),
                value: "application/json".to_owned(),
            }],
            body: br#"{"status":"pong"}"#.to_vec(),
        }));
    }

    let summary = summarize(event_name, &payload)?;
    let event_type = match &payload.action {
        Some(action) if !action.is_empty() => format!("github.{event_name}.{action}"),
        _ => format!("github.{event_name}"),
    };
    let (source, subject) = match (&payload.repository, &payload.organization) {
        (Some(repository), _) => (
            repository
                .html_url
                .clone()
                .unwrap_or_else(|| format!("https://github.com/{}", repository.full_name)),
            Some(repository.full_name.clone()),
        ),
        (None, Some(organization)) => (
            format!("https://github.com/{}", organization.login),
            Some(organization.login.clone()),
        ),
        (None, None) => ("https://github.com".to_owned(), None),
    };

    // The payload was parsed above, so its bytes are one JSON document and can be embedded
    // as they are, without rebuilding them from a tree.
    let payload_text =
        std::str::from_utf8(&request.body).map_err(|_| malformed("the body is not UTF-8"))?;
    let mut data = String::with_capacity(payload_text.len() + summary.len() + 32);
    data.push_str("{\"event\":");
    data.push_str(&serde_json::to_string(event_name).expect("a string serializes"));
    data.push_str(",\"summary\":");
    data.push_str(&summary);
    data.push_str(",\"payload\":");
    data.push_str(payload_text);
    data.push('}');

    Ok(Outcome::Events(vec![Event {
        id: delivery_id.to_owned(),
        source,
        route_keys: vec![event_type.clone()],
        event_type,
        subject,
        time: String::new(),
        data,
    }]))
}

/// The compact summary of the common events, as JSON; `null` for the others. Also where an
/// event that lacks what its kind requires is refused.
fn summarize(event_name: &str, payload: &Payload) -> Result<String, Refusal> {
    let summary = match event_name {
        "push" => {
            let (Some(git_ref), Some(before), Some(after), Some(pusher)) = (
                &payload.git_ref,
                &payload.before,
                &payload.after,
                &payload.pusher,
            ) else {
                return Err(invalid(
                    "a push event needs `ref`, `before`, `after` and `pusher`",
                ));
            };
            serde_json::json!({
                "ref": git_ref,
                "before": before,
                "after": after,
                "commit_count": payload.commits.as_ref().map_or(0, Vec::len),
                "pusher": pusher.name,
            })
        }
        "pull_request" => {
            let pull_request = payload
                .pull_request
                .as_ref()
                .ok_or_else(|| invalid("a pull_request event needs `pull_request`"))?;
            serde_json::json!({
                "number": payload.number.unwrap_or(pull_request.number),
                "action": payload.action,
                "title": pull_request.title,
                "head_ref": pull_request.head.git_ref,
                "base_ref": pull_request.base.git_ref,
                "merged": pull_request.merged.unwrap_or(false),
            })
        }
        "issues" => {
            let issue = payload
                .issue
                .as_ref()
                .ok_or_else(|| invalid("an issues event needs `issue`"))?;
            serde_json::json!({
                "number": issue.number,
                "action": payload.action,
                "title": issue.title,
                "state": issue.state,
            })
        }
        "release" => {
            let release = payload
                .release
                .as_ref()
                .ok_or_else(|| invalid("a release event needs `release`"))?;
            serde_json::json!({
                "action": payload.action,
                "tag": release.tag_name,
                "name": release.name,
                "draft": release.draft,
                "prerelease": release.prerelease,
            })
        }
        "workflow_run" => {
            let run = payload
                .workflow_run
                .as_ref()
                .ok_or_else(|| invalid("a workflow_run event needs `workflow_run`"))?;
            serde_json::json!({
                "action": payload.action,
                "id": run.id,
                "name": run.name,
                "head_branch": run.head_branch,
                "status": run.status,
                "conclusion": run.conclusion,
            })
        }
        _ => serde_json::Value::Null,
    };
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(event: &str, body: &str) -> Request {
        Request::post(
            "github",
            &[
                ("x-github-event", event),
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ],
            body.as_bytes(),
        )
    }

    const PUSH: &str = r#"{"ref":"refs/heads/main","before":"a","after":"b","commits":[{},{}],"pusher":{"name":"octocat"},"repository":{"full_name":"octo/repo","html_url":"https://github.com/octo/repo"}}"#;

    #[test]
    fn push_becomes_one_event_with_a_summary_and_the_payload() {
        let Outcome::Events(events) = GitHub::handle(request("push", PUSH)) else {
            panic!("expected events");
        };
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(event.event_type, "github.push");
        assert_eq!(event.subject.as_deref(), Some("octo/repo"));
        assert_eq!(event.source, "https://github.com/octo/repo");
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["summary"]["commit_count"], 2);
        assert_eq!(data["summary"]["pusher"], "octocat");
        assert_eq!(data["payload"]["ref"], "refs/heads/main");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let table: &[(&str, &str, RejectionKind, &str)] = &[
            ("push", "not json", RejectionKind::Malformed, "JSON object"),
            ("push", "[1,2]", RejectionKind::Malformed, "JSON object"),
            (
                "push",
                "{\"ref\":",
                RejectionKind::Malformed,
                "not valid JSON",
            ),
            ("push", "{}", RejectionKind::Invalid, "needs `ref`"),
            (
                "pull_request",
                "{\"action\":\"opened\"}",
                RejectionKind::Invalid,
                "needs `pull_request`",
            ),
            ("issues", "{}", RejectionKind::Invalid, "needs `issue`"),
            ("Push!", PUSH, RejectionKind::Malformed, "not an event name"),
        ];
        for (event, body, kind, reason_part) in table {
            match GitHub::handle(request(event, body)) {
                Outcome::Rejected(rejection) => {
                    assert_eq!(rejection.kind, *kind, "event {event} body {body}");
                    assert!(
                        rejection.reason.contains(reason_part),
                        "reason {:?} lacks {reason_part:?}",
                        rejection.reason
                    );
                }
                other => panic!("expected a rejection for {event} {body}, got {other:?}"),
            }
        }
    }

    #[test]
    fn ping_is_answered_without_events() {
        assert!(matches!(
            GitHub::handle(request(
                "ping",
                r#"{"zen":"Keep it logically awesome.","hook_id":1}"#
            )),
            Outcome::Reply(Reply { status: 200, .. })
        ));
    }

    #[test]
    fn configuration_must_be_empty() {
        assert!(GitHub::configure("").is_ok());
        assert!(GitHub::configure("{}").is_ok());
        assert!(GitHub::configure(r#"{"x":1}"#).is_err());
    }
}
