//! The GitLab plugin: project webhooks become `gitlab.<object_kind>[.<action>]` events about
//! the project (`group/project`).
//!
//! The host compares `X-Gitlab-Token` with the source's secrets in constant time before this
//! code runs. The dedupe id is `Idempotency-Key` (GitLab 17.4+), else `X-Gitlab-Event-UUID`.

use serde::Deserialize;
use wasmhook_plugin_sdk::{
    Event, Manifest, Outcome, Plugin, Refusal, RejectionKind, Request, SignatureScheme,
    SourceSettings, export_plugin,
};

/// The GitLab plugin.
pub struct GitLab;

export_plugin!(GitLab);

#[derive(Deserialize)]
struct Payload {
    object_kind: Option<String>,
    project: Option<Project>,
    object_attributes: Option<ObjectAttributes>,
}

#[derive(Deserialize)]
struct Project {
    path_with_namespace: Option<String>,
    web_url: Option<String>,
}

#[derive(Deserialize)]
struct ObjectAttributes {
    action: Option<String>,
}

fn signature_scheme() -> SignatureScheme {
    SignatureScheme::SharedToken("x-gitlab-token".to_owned())
}

impl Plugin for GitLab {
    fn describe() -> Manifest {
        Manifest {
            name: "gitlab".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "GitLab project and group webhooks.".to_owned(),
            signature: signature_scheme(),
            dedupe_header: Some("idempotency-key".to_owned()),
            event_types: vec!["gitlab.*".to_owned()],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        wasmhook_plugin_sdk::settings_without_configuration(config, Self::describe())
    }

    fn handle(request: Request) -> Outcome {
        Outcome::one_event(normalize(&request))
    }
}

fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

/// Normalizes one delivery (plain Rust, also called natively by tests).
pub fn normalize(request: &Request) -> Result<Event, Refusal> {
    let malformed = |reason: String| (RejectionKind::Malformed, reason);
    if request.header("x-gitlab-event").is_none() {
        return Err(malformed("missing the X-Gitlab-Event header".to_owned()));
    }
    let id = request
        .header("idempotency-key")
        .or_else(|| request.header("x-gitlab-event-uuid"))
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            malformed("missing both the Idempotency-Key and X-Gitlab-Event-UUID headers".to_owned())
        })?;
    if request.body.trim_ascii_start().first() != Some(&b'{') {
        return Err(malformed("the body is not a JSON object".to_owned()));
    }
    let payload: Payload = serde_json::from_slice(&request.body)
        .map_err(|error| malformed(format!("the body is not valid JSON: {error}")))?;
    let kind = payload
        .object_kind
        .filter(|kind| is_word(kind))
        .ok_or_else(|| {
            (
                RejectionKind::Invalid,
                "`object_kind` is missing or not a word".to_owned(),
            )
        })?;
    let event_type = match payload
        .object_attributes
        .and_then(|attributes| attributes.action)
        .filter(|action| is_word(action))
    {
        Some(action) => format!("gitlab.{kind}.{action}"),
        None => format!("gitlab.{kind}"),
    };
    let (source, subject) = match payload.project {
        Some(project) => {
            let path = project.path_with_namespace;
            let source = project
                .web_url
                .or_else(|| {
                    path.as_ref()
                        .map(|path| format!("https://gitlab.com/{path}"))
                })
                .unwrap_or_else(|| "https://gitlab.com".to_owned());
            (source, path)
        }
        None => ("https://gitlab.com".to_owned(), None),
    };
    let data = std::str::from_utf8(&request.body)
        .map_err(|_| malformed("the body is not UTF-8".to_owned()))?
        .to_owned();
    Ok(Event {
        id: id.to_owned(),
        source,
        route_keys: vec![event_type.clone()],
        event_type,
        subject,
        time: String::new(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        Request::post("gitlab", headers, body.as_bytes())
    }

    /// Shaped like the merge request example of GitLab's webhook documentation.
    const MERGE_REQUEST: &str = r#"{"object_kind":"merge_request","event_type":"merge_request","user":{"username":"root"},"project":{"id":1,"path_with_namespace":"gitlabhq/gitlab-test","web_url":"http://example.com/gitlabhq/gitlab-test"},"object_attributes":{"id":99,"iid":1,"action":"open","state":"opened"}}"#;
    const PUSH: &str = r#"{"object_kind":"push","ref":"refs/heads/master","project":{"path_with_namespace":"mike/diaspora"}}"#;

    #[test]
    fn deliveries_become_typed_events_about_the_project() {
        let event = normalize(&request(
            &[
                ("x-gitlab-event", "Merge Request Hook"),
                ("idempotency-key", "f1b5a6c8-1d2e-4c3b-9a7f-000000000001"),
                ("x-gitlab-event-uuid", "not-this-one"),
            ],
            MERGE_REQUEST,
        ))
        .unwrap();
        assert_eq!(event.event_type, "gitlab.merge_request.open");
        assert_eq!(event.id, "f1b5a6c8-1d2e-4c3b-9a7f-000000000001");
        assert_eq!(event.subject.as_deref(), Some("gitlabhq/gitlab-test"));
        assert_eq!(event.source, "http://example.com/gitlabhq/gitlab-test");

        let push = normalize(&request(
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-event-uuid", "uuid-2"),
            ],
            PUSH,
        ))
        .unwrap();
        assert_eq!(push.event_type, "gitlab.push");
        assert_eq!(
            push.id, "uuid-2",
            "the event UUID when there is no Idempotency-Key"
        );
        assert_eq!(push.source, "https://gitlab.com/mike/diaspora");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, RejectionKind, &'a str);
        let table: &[Case] = &[
            (
                &[("x-gitlab-event-uuid", "1")],
                PUSH,
                RejectionKind::Malformed,
                "X-Gitlab-Event",
            ),
            (
                &[("x-gitlab-event", "Push Hook")],
                PUSH,
                RejectionKind::Malformed,
                "Idempotency-Key",
            ),
            (
                &[
                    ("x-gitlab-event", "Push Hook"),
                    ("x-gitlab-event-uuid", "1"),
                ],
                "nope",
                RejectionKind::Malformed,
                "JSON object",
            ),
            (
                &[
                    ("x-gitlab-event", "Push Hook"),
                    ("x-gitlab-event-uuid", "1"),
                ],
                "{}",
                RejectionKind::Invalid,
                "object_kind",
            ),
        ];
        for (headers, body, kind, reason_part) in table {
            let (actual_kind, reason) = normalize(&request(headers, body)).unwrap_err();
            assert_eq!(actual_kind, *kind, "{body}");
            assert!(reason.contains(reason_part), "{reason}");
        }
    }
}
