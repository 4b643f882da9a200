//! OFFSET / LIMIT over the final order.

use crate::protocol::resultset::TextRow;

/// Skips `offset` rows, then keeps at most `limit` (all when `None`). An offset beyond the end
/// gives no rows.
pub fn limit(rows: Vec<TextRow>, offset: u64, limit: Option<u64>) -> Vec<TextRow> {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    if offset == 0 && limit >= rows.len() {
        return rows;
    }
    rows.into_iter().skip(offset).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::row;

    fn rows(n: usize) -> Vec<TextRow> {
        (0..n).map(|i| row(&[Some(&i.to_string())])).collect()
    }

    #[test]
    fn offset_and_limit() {
        assert_eq!(limit(rows(5), 0, None), rows(5));
        assert_eq!(limit(rows(5), 0, Some(2)), rows(2));
        assert_eq!(limit(rows(5), 3, Some(10)), rows(5)[3..].to_vec());
        assert_eq!(limit(rows(5), 1, Some(2)), rows(5)[1..3].to_vec());
        assert!(limit(rows(5), 0, Some(0)).is_empty());
    }

    #[test]
    fn offset_beyond_end_is_empty() {
        assert!(limit(rows(5), 5, None).is_empty());
        assert!(limit(rows(5), 6, Some(1)).is_empty());
        assert!(limit(rows(5), u64::MAX, Some(u64::MAX)).is_empty());
    }
}
