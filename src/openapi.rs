//! The OpenAPI description of the REST API (`/api/openapi.json`) and its browsable docs
//! (`/api/docs`, Scalar, served from the binary — nothing is downloaded at build time).
//! The paths come from the features' route registrations (utoipa-actix-web), so the route
//! list is written once, in each feature's `FEATURE`. The error responses every operation
//! shares (bad input, credentials, not found, database trouble) are declared here once, from
//! what the operation takes ([`common_errors`]); a handler declares only its own (409, 410…).

use crate::error;
use actix_web::{HttpResponse, web};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::OpenApiFactory;
use utoipa_scalar::{Scalar, Servable};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bedda-collab",
        description = "Real-time collaboration server for bedda.ai. Errors always have the body \\
            `{\"code\", \"message\"}`; see docs/PROTOCOL.md for the code table.",
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A login session token (`bcs_…`) or an API token (`bct_…`)"))
                    .build(),
            ),
        );
    }
}

/// The whole document: the description above plus every path (and schema) `api` registers.
pub fn document(api: impl OpenApiFactory) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.paths.merge(api.paths());
    let mut schemas = Vec::new();
    api.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            common_errors(operation);
        }
    }
    doc
}

/// Declares the error responses an operation can give because of what it takes — the
/// extractors every handler shares (`api::Call`, `api::Json`, `api::Query`, `api::Path`)
/// and the database under them — unless the handler declared that status itself.
fn common_errors(operation: &mut Operation) {
    let takes = |place: ParameterIn| {
        operation
            .parameters
            .iter()
            .flatten()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    let (path, query, body) = (
        takes(ParameterIn::Path),
        takes(ParameterIn::Query),
        operation.request_body.is_some(),
    );
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let malformed: Vec<&str> = [
        (body, "`invalid_json`"),
        (query, "`invalid_query`"),
        (path, "`invalid_path`"),
    ]
    .into_iter()
    .filter_map(|(has, code)| has.then_some(code))
    .collect();
    let mut common = Vec::new();
    if !malformed.is_empty() {
        common.push(("400", format!("Malformed input: {}", malformed.join(", "))));
    }
    // The authentication middleware refuses a bad `Authorization` header on every `/api` route.
    common.push((
        "401",
        "`unauthenticated`: credentials missing (where required), malformed, expired or revoked".to_owned(),
    ));
    if secured {
        common.push((
            "403",
            "`permission_denied`, or `user_required` (an API token cannot do this)".to_owned(),
        ));
    }
    if path {
        common.push((
            "404",
            "The resource named in the path does not exist or is not visible to the caller (`*_not_found`)".to_owned(),
        ));
    }
    if body {
        common.push(("413", "`payload_too_large`: the body is over 64 KiB".to_owned()));
    }
    if body || query || path {
        common.push((
            "422",
            "`validation_failed`: a field breaks a rule (length, format, allowed values, a NUL character)".to_owned(),
        ));
    }
    common.push(("500", "`internal`: a server fault (details are in its log)".to_owned()));
    common.push((
        "503",
        "`service_unavailable`: the database is unreachable or overloaded".to_owned(),
    ));
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses.entry(status.to_owned()).or_insert_with(|| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build(),
            )
        });
    }
}

/// `GET /api/openapi.json` and `GET /api/docs`.
pub fn serve(cfg: &mut web::ServiceConfig, doc: utoipa::openapi::OpenApi) {
    let json = serde_json::to_string(&doc).expect("the OpenAPI document serializes");
    cfg.route(
        "/api/openapi.json",
        web::get().to(move || {
            let json = json.clone();
            async move { HttpResponse::Ok().content_type("application/json").body(json) }
        }),
    )
    .service(Scalar::with_url("/api/docs", doc));
}
