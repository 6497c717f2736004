//! The OpenAPI 3.1 document of the admin API and the table of its operations, from which the
//! router is built, so that the document and the routes cannot drift apart unnoticed.

use std::sync::Arc;

use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::OpenApi;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, Schema};

use super::{AdminState, ErrorBody, destinations, events, plugins, replay, secrets, sources};
use crate::config::{DestinationConfig, SourceConfig};
use crate::model::destination::DestinationSettings;
use crate::model::settings::FlattenedSettings;
use crate::model::source::SourceSettings;
use crate::store;

#[derive(OpenApi)]
#[openapi(
    info(title = "wasmhook admin API", version = "1"),
    paths(
        sources::list_sources,
        sources::create_source,
        sources::get_source,
        sources::update_source,
        sources::delete_source,
        sources::add_source_secret,
        sources::retire_source_secret,
        destinations::list_destinations,
        destinations::create_destination,
        destinations::get_destination,
        destinations::update_destination,
        destinations::delete_destination,
        destinations::pause_destination,
        destinations::resume_destination,
        destinations::add_destination_secret,
        destinations::retire_destination_secret,
        events::list_events,
        events::get_event,
        replay::replay,
        plugins::list_plugins,
        plugins::upload_plugin,
        plugins::activate_plugin,
        plugins::rollback_plugin,
    ),
    components(schemas(
        sources::SourceView,
        SourceConfig,
        crate::model::source::RateLimitConfig,
        crate::model::source::LimitOverrides,
        store::secrets::SecretView,
        secrets::NewSecret,
        secrets::CreatedSecret,
        destinations::DestinationView,
        DestinationConfig,
        store::destinations::DestinationStats,
        events::EventPage,
        store::events::EventSummary,
        store::events::QuarantinedSummary,
        store::events::EventDetail,
        store::events::RawRequestView,
        store::events::DeliveryView,
        store::events::AttemptView,
        replay::ReplayRequest,
        replay::ReplayAnswer,
        store::plugin_versions::PluginVersionView,
        plugins::ActivateRequest,
        ErrorBody,
    )),
    modifiers(&BearerAuth, &CommonResponses, &MergedSettings),
    security(("bearer" = []))
)]
pub struct AdminApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The statuses any operation may answer besides its own: 500 when the server fails, 503 while
/// the database is unavailable, and 413 for a request body over the limit, so that the document
/// lists every status the API can give.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error_body = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let failure = error_body("The server failed; the server log has the cause.");
        let unavailable =
            error_body("The database is unavailable; the same request may succeed later.");
        let too_large = ResponseBuilder::new()
            .description("The body is over the limit (2 MiB; 128 MiB for a plugin upload).")
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.insert("500".to_owned(), failure.clone().into());
                responses.insert("503".to_owned(), unavailable.clone().into());
                if operation.request_body.is_some() {
                    responses.insert("413".to_owned(), too_large.clone().into());
                }
            }
        }
    }
}

/// `#[serde(flatten)]` makes utoipa document the config and view types of sources and
/// destinations as `allOf` [the settings with their defaults, the other keys]. On the wire each
/// is one object, and the document has always described it as one, without defaults: this
/// merges each back, so that moving the settings into `SourceSettings` and
/// `DestinationSettings` left the document as it was.
struct MergedSettings;

/// A type the settings are flattened into: its schema's name, whether it is a view (which shows
/// every setting), the key the settings follow in its field order, and the settings' keys in
/// field order with which of them may be null.
struct Flattened {
    schema: &'static str,
    view: bool,
    after: &'static str,
    keys: fn() -> &'static [&'static str],
    defaults: fn() -> serde_json::Value,
}

fn defaults_of<Settings: FlattenedSettings>() -> serde_json::Value {
    serde_json::to_value(Settings::default()).expect("the settings serialize")
}

/// One entry of `FLATTENED`.
const fn flattened<Settings: FlattenedSettings>(
    schema: &'static str,
    view: bool,
    after: &'static str,
) -> Flattened {
    Flattened {
        schema,
        view,
        after,
        keys: Settings::keys,
        defaults: defaults_of::<Settings>,
    }
}

const FLATTENED: [Flattened; 4] = [
    flattened::<SourceSettings>("SourceConfig", false, "plugin"),
    flattened::<SourceSettings>("SourceView", true, "plugin"),
    flattened::<DestinationSettings>("DestinationConfig", false, "headers"),
    flattened::<DestinationSettings>("DestinationView", true, "headers"),
];

impl utoipa::Modify for MergedSettings {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for flattened in &FLATTENED {
            if let Some(schema) = components.schemas.get_mut(flattened.schema) {
                merge_flattened_settings(schema, flattened);
            }
        }
    }
}

/// Merges the settings into the object of the other keys, in field order after `after`. The
/// view always shows every setting, so there a setting is required unless it may be null; the
/// config's input may leave any out, and refuses unknown keys.
fn merge_flattened_settings(schema: &mut RefOr<Schema>, flattened: &Flattened) {
    let RefOr::T(Schema::AllOf(all_of)) = schema else {
        return;
    };
    let mut parts = std::mem::take(&mut all_of.items)
        .into_iter()
        .filter_map(|item| match item {
            RefOr::T(Schema::Object(object)) => Some(object),
            _ => None,
        });
    let (Some(settings), Some(mut object)) = (parts.next(), parts.next()) else {
        return;
    };
    object.description = all_of.description.take();
    let values = (flattened.defaults)();
    let after = object
        .required
        .iter()
        .position(|key| key == flattened.after);
    let mut at = after.map_or(object.required.len(), |index| index + 1);
    for (key, mut property) in settings.properties {
        match &mut property {
            RefOr::T(Schema::Object(property)) => {
                property.default = None;
                // The view showed the worker's `usize` here, which has no format.
                if flattened.view && key == "max_concurrency" {
                    property.format = None;
                }
            }
            RefOr::T(Schema::Array(property)) => property.default = None,
            RefOr::T(Schema::OneOf(property)) => property.default = None,
            _ => {}
        }
        object.properties.insert(key, property);
    }
    if flattened.view {
        // The settings in field order (the schema's map is sorted).
        let keys = (flattened.keys)()
            .iter()
            .filter(|key| !values[**key].is_null());
        for key in keys {
            object.required.insert(at, key.to_string());
            at += 1;
        }
    } else {
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
    *schema = RefOr::T(Schema::Object(object));
}

/// One operation of the admin API: the router serves it and `operations` lists it, from the
/// same value, so the OpenAPI test sees every route the router has.
pub(super) struct Operation {
    method: Method,
    pub(super) path: &'static str,
    pub(super) route: MethodRouter<Arc<AdminState>>,
}

fn operation<H, T>(method: Method, path: &'static str, handler: H) -> Operation
where
    H: axum::handler::Handler<T, Arc<AdminState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .expect("every admin operation uses a standard method");
    Operation {
        method,
        path,
        route: on(filter, handler),
    }
}

/// Every operation behind the token (the OpenAPI document itself is served without it).
pub(super) fn operation_table() -> Vec<Operation> {
    let mut upload = operation(
        Method::PUT,
        "/admin/v1/plugins/{name}",
        plugins::upload_plugin,
    );
    // JavaScript and Python components are tens of megabytes.
    upload.route = upload
        .route
        .layer(axum::extract::DefaultBodyLimit::max(128 << 20));
    let (sources_path, source) = ("/admin/v1/sources", "/admin/v1/sources/{name}");
    let source_secrets = "/admin/v1/sources/{name}/secrets";
    let source_secret = "/admin/v1/sources/{name}/secrets/{secret_id}";
    let destinations_path = "/admin/v1/destinations";
    let destination = "/admin/v1/destinations/{name}";
    let destination_secrets = "/admin/v1/destinations/{name}/secrets";
    let destination_secret = "/admin/v1/destinations/{name}/secrets/{secret_id}";
    let pause = "/admin/v1/destinations/{name}/pause";
    let resume = "/admin/v1/destinations/{name}/resume";
    let activate = "/admin/v1/plugins/{name}/activate";
    let rollback = "/admin/v1/plugins/{name}/rollback";
    // Short names keep one operation a line.
    use Method as M;
    use destinations as d;
    use sources as s;
    vec![
        operation(M::GET, sources_path, s::list_sources),
        operation(M::POST, sources_path, s::create_source),
        operation(M::GET, source, s::get_source),
        operation(M::PUT, source, s::update_source),
        operation(M::DELETE, source, s::delete_source),
        operation(M::POST, source_secrets, s::add_source_secret),
        operation(M::DELETE, source_secret, s::retire_source_secret),
        operation(M::POST, destination_secrets, d::add_destination_secret),
        operation(M::DELETE, destination_secret, d::retire_destination_secret),
        operation(M::GET, destinations_path, d::list_destinations),
        operation(M::POST, destinations_path, d::create_destination),
        operation(M::GET, destination, d::get_destination),
        operation(M::PUT, destination, d::update_destination),
        operation(M::DELETE, destination, d::delete_destination),
        operation(M::POST, pause, d::pause_destination),
        operation(M::POST, resume, d::resume_destination),
        operation(M::GET, "/admin/v1/events", events::list_events),
        operation(M::GET, "/admin/v1/events/{id}", events::get_event),
        operation(M::POST, "/admin/v1/replay", replay::replay),
        operation(M::GET, "/admin/v1/plugins", plugins::list_plugins),
        upload,
        operation(M::POST, activate, plugins::activate_plugin),
        operation(M::POST, rollback, plugins::rollback_plugin),
    ]
}

/// The method and path of every route the admin router serves behind the token, for the test
/// that checks each one is documented and needs the token.
pub fn operations() -> Vec<(Method, &'static str)> {
    operation_table()
        .into_iter()
        .map(|operation| (operation.method, operation.path))
        .collect()
}

pub(super) async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        AdminApiDoc::openapi()
            .to_pretty_json()
            .expect("the document serializes"),
    )
        .into_response()
}
