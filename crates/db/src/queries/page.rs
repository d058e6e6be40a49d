//! Page-based pagination shared by every list query.
//!
//! The API pages with `limit` (1–[`MAX_LIMIT`]) and `offset`, and reports the total number
//! of matching rows (`X-Total-Count`). List functions take a [`PageRequest`] and return a
//! [`Page`]; they count with the same filters in the same transaction-free snapshot
//! semantics PostgreSQL gives one statement each (the count may race with writes between
//! the two statements, which is acceptable for a page header).

/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 500;
/// Page size when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;

/// Which slice of a sorted list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, 1–[`MAX_LIMIT`].
    pub limit: u32,
    /// Rows to skip.
    pub offset: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: DEFAULT_LIMIT, offset: 0 }
    }
}

impl PageRequest {
    /// A page request, or `None` when `limit` is 0 or above [`MAX_LIMIT`] (the caller turns
    /// that into a 400).
    pub fn new(limit: u32, offset: u64) -> Option<Self> {
        (1..=MAX_LIMIT).contains(&limit).then_some(Self { limit, offset })
    }

    /// `limit` as the SQL `LIMIT` operand.
    pub fn sql_limit(self) -> i64 {
        i64::from(self.limit)
    }

    /// `offset` as the SQL `OFFSET` operand (saturating).
    pub fn sql_offset(self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }
}

/// One page of results and the total number of matching rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of this page, in the requested order.
    pub items: Vec<T>,
    /// How many rows match the filters in all (for `X-Total-Count`).
    pub total: u64,
}

impl<T> Page<T> {
    /// Maps every item, keeping the total.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), total: self.total }
    }
}

/// Sort direction of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Smallest first.
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds_are_enforced() {
        assert!(PageRequest::new(0, 0).is_none());
        assert!(PageRequest::new(MAX_LIMIT + 1, 0).is_none());
        assert_eq!(PageRequest::new(MAX_LIMIT, 7).map(|p| (p.sql_limit(), p.sql_offset())), Some((500, 7)));
        assert_eq!(PageRequest::new(1, u64::MAX).map(|p| p.sql_offset()), Some(i64::MAX));
    }
}
