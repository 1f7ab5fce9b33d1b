//! Committee rotation, the operator's side: `POST /api/v1/admin/committee` approves a
//! committee update (a new key set and threshold, effective from a later milestone index),
//! `DELETE` withdraws it. A member puts the approved update in the milestones it proposes
//! and signs a proposal carrying an update only if it is the approved one, so an update
//! takes effect once k members of the committee in office approved the same one and one of
//! them proposed it (see `dag_core::committee` and ARCHITECTURE.md, "Committee rotation").
//! `GET /api/v1/committee` shows the schedule and the pending approval.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::api::ApiError;
use crate::runtime::NodeHandle;
use crate::service::{CommitteeView, NodeService};

/// The admin routes (under `/api/v1/admin`): `POST /committee` and `DELETE /committee`.
pub fn admin_router(node: NodeHandle) -> Router {
    Router::new()
        .route("/committee", post(approve_update).delete(withdraw_update))
        .with_state(node)
}

/// Approves a committee update (admin; bearer token): this node, when it proposes or issues
/// a milestone, carries it, and as a member signs a proposal carrying an update only if it
/// is this one. Refused (422): an unusable set, an index not after the next milestone, or
/// another update still pending.
#[utoipa::path(post, path = "/api/v1/admin/committee", tag = "admin",
    security(("bearer" = [])),
    request_body = crate::api::openapi::CommitteeUpdateDoc,
    responses(
        (status = 200, description = "Approved; the schedule and the approval", body = CommitteeView),
        (status = 400, description = "Not a committee update", body = crate::api::ErrorBody),
        (status = 401, description = "No bearer token", body = crate::api::ErrorBody),
        (status = 403, description = "Wrong token", body = crate::api::ErrorBody),
        (status = 404, description = "Admin routes disabled (no token configured)", body = crate::api::ErrorBody),
        (status = 422, description = "The update breaks a rotation rule", body = crate::api::ErrorBody),
    ))]
pub(crate) async fn approve_update(
    State(node): State<NodeHandle>,
    body: Result<Json<dag_core::CommitteeUpdate>, JsonRejection>,
) -> Response {
    let update = match body {
        Ok(Json(u)) => u,
        Err(e) => return ApiError::malformed(e.body_text()).into_response(),
    };
    let result = node.with_protocol_mut(|p| p.approve_committee_update(Some(update)));
    match result {
        Ok(()) => {
            tracing::info!("committee update approved by the operator");
            view(&node)
        }
        Err(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why).into_response(),
    }
}

/// Withdraws the approved committee update, if any (admin; bearer token).
#[utoipa::path(delete, path = "/api/v1/admin/committee", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Withdrawn; the schedule", body = CommitteeView),
        (status = 401, description = "No bearer token", body = crate::api::ErrorBody),
        (status = 403, description = "Wrong token", body = crate::api::ErrorBody),
        (status = 404, description = "Admin routes disabled (no token configured)", body = crate::api::ErrorBody),
    ))]
pub(crate) async fn withdraw_update(State(node): State<NodeHandle>) -> Response {
    // Withdrawing cannot fail.
    let _ = node.with_protocol_mut(|p| p.approve_committee_update(None));
    view(&node)
}

fn view(node: &NodeHandle) -> Response {
    match node.committee() {
        Some(v) => (StatusCode::OK, Json(v)).into_response(),
        None => ApiError::internal("no committee schedule").into_response(),
    }
}
