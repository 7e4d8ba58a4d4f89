//! The OpenAPI description of the REST API (`/api/openapi.json`) and its browsable docs
//! (`/api/docs`, Scalar, served from the binary — nothing is downloaded at build time).
//! The paths come from the features' route registrations (utoipa-actix-web), so the route
//! list is written once, in each feature's `FEATURE`.

use crate::error;
use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    doc
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
