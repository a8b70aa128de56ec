//! `GET /shares/search/principals`: users and groups of the caller's tenant
//! to share with or name in an ACL.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use scaidrive_projections::{groups, tenancy};
use serde::Deserialize;

use super::drive::require_read;
use super::dto::sharing::{PrincipalGroup, PrincipalSearch, PrincipalUser};
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::principal::Principal;
use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/shares/search/principals", get(search))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum PrincipalType {
    User,
    Group,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// Matches names and emails.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only users or only groups.
    #[param(inline)]
    principal_type: Option<PrincipalType>,
    /// Default 20.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<i64>,
}

/// Users and groups of the caller's tenant to share with.
#[utoipa::path(get, path = "/shares/search/principals", params(SearchQuery), responses(
    (status = 200, description = "Matching users and groups", body = PrincipalSearch),
))]
async fn search(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<PrincipalSearch>> {
    require_read(&p)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 50".into(),
        ));
    }
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::BadRequest(
            "q must be at most 200 characters".into(),
        ));
    }
    let tenant = p.tenant_id.to_string();
    let want_users = !matches!(q.principal_type, Some(PrincipalType::Group));
    let want_groups = !matches!(q.principal_type, Some(PrincipalType::User));
    let users = if want_users {
        tenancy::search_users(&state.db, &tenant, text, limit).await?
    } else {
        Vec::new()
    };
    let found_groups = if want_groups {
        groups::groups(&state.db, &tenant, text, limit, 0).await?.0
    } else {
        Vec::new()
    };
    Ok(Json(PrincipalSearch {
        users: users.iter().map(PrincipalUser::from).collect(),
        groups: found_groups.iter().map(PrincipalGroup::from).collect(),
    }))
}
