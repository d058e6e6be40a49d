//! `limit` / `offset` query parameters and the `X-Total-Count` response header.

use actix_web::HttpResponse;
use actix_web::http::header::HeaderName;
use openwatch_db::queries::page::{DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest, SortOrder};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// `X-Total-Count`: how many items match the filters in all.
pub const TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

/// Paging parameters of every list route.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page (1–500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
}

impl PageParams {
    /// The validated page request (400 `invalid_limit` outside 1–500).
    pub fn page(self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        PageRequest::new(limit, self.offset.unwrap_or(0)).ok_or_else(|| {
            ApiError::bad_request("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}"))
        })
    }
}

/// Sort direction parameter.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Ascending.
    #[default]
    Asc,
    /// Descending.
    Desc,
}

impl From<Order> for SortOrder {
    fn from(order: Order) -> Self {
        match order {
            Order::Asc => SortOrder::Asc,
            Order::Desc => SortOrder::Desc,
        }
    }
}

/// A page of items as the JSON body `{"items": […], "total": n, "limit": l, "offset": o}`,
/// with `X-Total-Count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody<T: ToSchema> {
    /// The items.
    pub items: Vec<T>,
    /// Matching items in all.
    pub total: u64,
    /// Page size used.
    pub limit: u32,
    /// Offset used.
    pub offset: u64,
}

/// Renders a page, mapping each row to its response type.
pub fn page_response<R, T: ToSchema + Serialize>(
    page: Page<R>,
    request: PageRequest,
    map: impl FnMut(R) -> T,
) -> HttpResponse {
    let page = page.map(map);
    HttpResponse::Ok().insert_header((TOTAL_COUNT, page.total)).json(PageBody {
        items: page.items,
        total: page.total,
        limit: request.limit,
        offset: request.offset,
    })
}
