//! Paging of newest-first lists: `?limit=N` (the contract's form) or
//! `?page=P&page_size=S`, and the `pagination` object answers carry.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use crate::store::PageRequest;

/// Which entries of a newest-first list to return: `?limit=N` (the newest N, the
/// contract's form) or `?page=P&page_size=S`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many of the newest entries to return: a positive integer, capped at 1000.
    /// With `page` or `page_size` it is the page size, and the page is 1.
    #[param(schema_with = positive_integer)]
    pub limit: Option<String>,
    /// Page number, from 1. Giving `page` or `page_size` switches to paging.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Entries per page, 1-100 (default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub page_size: Option<String>,
}

/// `?limit=N`: how many of the newest entries to return.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// A positive integer; larger values are capped.
    #[param(schema_with = positive_integer)]
    pub limit: Option<String>,
}

/// An integer of at least 1 without a declared maximum: a `limit` of any size is
/// accepted (and capped), so the document must not promise a 64-bit bound.
pub fn positive_integer() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .minimum(Some(1))
        .build()
}

/// Most entries of a page.
pub const MAX_PAGE_SIZE: i64 = 100;
/// Entries of a page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: i64 = 10;

/// Parses `limit`: absent means `default`, above `max` is capped.
pub fn parse_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw.map(str::trim) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(max)),
            Ok(_) => Err(ApiError::bad_limit()),
            // Digits too many for an i64 are still a positive integer: cap them.
            Err(_)
                if !v.is_empty()
                    && v.bytes().all(|b| b.is_ascii_digit())
                    && v.bytes().any(|b| b != b'0') =>
            {
                Ok(max)
            }
            Err(_) => Err(ApiError::bad_limit()),
        },
    }
}

/// An optional integer within `range`; anything else is `bad()`.
fn parse_within(
    raw: Option<&str>,
    range: std::ops::RangeInclusive<i64>,
    bad: fn() -> ApiError,
) -> Result<Option<i64>, ApiError> {
    raw.map(|v| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(bad)
    })
    .transpose()
}

/// A validated page of a list: 1-based `page` of `page_size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: i64,
    pub page_size: i64,
}

impl Paging {
    /// The page a query asks for. Without `page` and `page_size` it is the newest
    /// `limit` (default `default_limit`, capped at `max_limit`) as page 1.
    pub fn parse(query: &ListQuery, default_limit: i64, max_limit: i64) -> Result<Self, ApiError> {
        let page = parse_within(query.page.as_deref(), 1..=i64::MAX, ApiError::bad_page)?;
        let page_size = parse_within(
            query.page_size.as_deref(),
            1..=MAX_PAGE_SIZE,
            ApiError::bad_page_size,
        )?;
        let limit = parse_limit(query.limit.as_deref(), default_limit, max_limit)?;
        Ok(match (page, page_size) {
            (None, None) => Paging {
                page: 1,
                page_size: limit,
            },
            // What the Python service did: `limit` wins and the page is the first.
            _ if query.limit.is_some() => Paging {
                page: 1,
                page_size: limit,
            },
            (page, size) => Paging {
                page: page.unwrap_or(1),
                page_size: size.unwrap_or(DEFAULT_PAGE_SIZE),
            },
        })
    }

    /// The rows to read. A page too far out to address is simply past the end.
    pub fn request(self) -> PageRequest {
        PageRequest {
            limit: self.page_size,
            offset: (self.page - 1).saturating_mul(self.page_size),
        }
    }

    /// Where this page sits in a list of `total` entries.
    pub fn of(self, total: i64) -> Pagination {
        let total_pages = (total + self.page_size - 1) / self.page_size;
        Pagination {
            page: self.page,
            page_size: self.page_size,
            total_count: total,
            total_pages,
            has_next: self.page < total_pages,
            has_prev: self.page > 1,
        }
    }
}

/// Where a page sits in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Pagination {
    #[schema(example = 1)]
    pub page: i64,
    #[schema(example = 20)]
    pub page_size: i64,
    /// Entries in the whole list.
    #[schema(example = 45)]
    pub total_count: i64,
    /// ceil(total_count / page_size); 0 for an empty list.
    #[schema(example = 3)]
    pub total_pages: i64,
    pub has_next: bool,
    pub has_prev: bool,
}

pub fn paging_from(
    query: Result<Query<ListQuery>, QueryRejection>,
    default: i64,
    max: i64,
) -> Result<Paging, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::bad_limit())?;
    Paging::parse(&query, default, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_caps_and_rejects() {
        assert_eq!(parse_limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(parse_limit(Some("5"), 100, 1000).unwrap(), 5);
        assert_eq!(parse_limit(Some("5000"), 100, 1000).unwrap(), 1000);
        assert_eq!(
            parse_limit(Some("99999999999999999999999"), 100, 1000).unwrap(),
            1000
        );
        for bad in ["0", "-1", "abc", "1.5", ""] {
            assert_eq!(
                parse_limit(Some(bad), 100, 1000).unwrap_err().to_string(),
                "limit must be a positive integer",
                "{bad}"
            );
        }
    }
}
