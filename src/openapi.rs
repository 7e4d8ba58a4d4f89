//! The OpenAPI description of the REST API (`/api/openapi.json`) and its browsable docs
//! (`/api/docs`, Scalar, served from the binary — nothing is downloaded at build time).

use crate::{ai, artifacts, audit, auth, cluster, error, gateway, sessions, workspaces};
use actix_web::{HttpResponse, Responder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_scalar::{Scalar, Servable};

/// Everything under `/api`.
#[derive(OpenApi)]
#[openapi(paths(
    auth::handlers::register,
    auth::handlers::login,
    auth::handlers::logout,
    auth::handlers::me,
    workspaces::handlers::get_catalogue,
    workspaces::handlers::create_workspace,
    workspaces::handlers::list_workspaces,
    workspaces::handlers::get_workspace,
    workspaces::handlers::update_workspace,
    workspaces::handlers::delete_workspace,
    workspaces::members::list_members,
    workspaces::members::update_member,
    workspaces::members::set_member_permissions,
    workspaces::members::remove_member,
    workspaces::members::leave_workspace,
    workspaces::invitations::create_invitation,
    workspaces::invitations::list_invitations,
    workspaces::invitations::revoke_invitation,
    workspaces::invitations::accept_invitation,
    workspaces::api_tokens::create_api_token,
    workspaces::api_tokens::list_api_tokens,
    workspaces::api_tokens::revoke_api_token,
    audit::list_audit,
    gateway::tickets::create_ticket,
    sessions::handlers::create_session,
    sessions::handlers::list_sessions,
    sessions::handlers::get_session,
    sessions::handlers::update_session,
    sessions::handlers::archive_session,
    sessions::handlers::unarchive_session,
    sessions::handlers::list_participants,
    sessions::handlers::add_participant,
    sessions::handlers::remove_participant,
    sessions::handlers::list_messages,
    cluster::admin::list_nodes,
    ai::handlers::list_models,
    ai::handlers::workspace_usage,
    artifacts::handlers::create_artifact,
    artifacts::handlers::list_artifacts,
    artifacts::handlers::get_artifact,
    artifacts::handlers::rename_artifact,
    artifacts::handlers::delete_artifact,
    artifacts::handlers::create_connect_token,
    artifacts::versions::save_version,
    artifacts::versions::list_versions,
    artifacts::versions::get_version,
    artifacts::versions::diff_versions,
    artifacts::versions::revert_version,
    artifacts::versions::create_branch,
    artifacts::versions::merge_branch,
))]
struct ApiPaths;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bedda-collab",
        description = "Real-time collaboration server for bedda.ai. Errors always have the body \
            `{\"code\", \"message\"}`; see docs/PROTOCOL.md for the code table.",
    ),
    nest((path = "/api", api = ApiPaths)),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

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

/// `GET /api/openapi.json`
pub async fn openapi_json() -> impl Responder {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// `GET /api/docs`
pub fn scalar() -> Scalar<utoipa::openapi::OpenApi> {
    Scalar::with_url("/api/docs", ApiDoc::openapi())
}
