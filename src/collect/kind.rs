//! Which source an instance's metrics are read from, and values kept per source.

use std::ops::{Index, IndexMut};

use crate::model;

/// Where a monitored instance's metrics come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Generated values (`"is_mock": true` in the API).
    Mock,
    /// Amazon CloudWatch, for real EC2 instances.
    CloudWatch,
}

impl SourceKind {
    /// Every kind, in declaration order (the order `PerKind` keeps its values in).
    pub const ALL: [SourceKind; 2] = [SourceKind::Mock, SourceKind::CloudWatch];

    /// The name the kind's metrics are stored under (`metrics.source`), also the
    /// `source` label of the collection metrics.
    pub fn as_str(self) -> &'static str {
        model::SampleSource::from(self).as_str()
    }

    /// The kind named by [`SourceKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s)
    }

    /// The kind of an instance registered with the API's `is_mock` flag, which is
    /// also how `instances.is_mock` stores it.
    pub fn from_is_mock(is_mock: bool) -> Self {
        if is_mock {
            SourceKind::Mock
        } else {
            SourceKind::CloudWatch
        }
    }

    /// The API's and the database's `is_mock` for this kind.
    pub fn is_mock(self) -> bool {
        self == SourceKind::Mock
    }

    fn position(self) -> usize {
        self as usize
    }
}

// `PerKind` indexes by discriminant, so `ALL` must list the kinds in order.
const _: () = {
    let mut i = 0;
    while i < SourceKind::ALL.len() {
        assert!(
            SourceKind::ALL[i] as usize == i,
            "SourceKind::ALL out of order"
        );
        i += 1;
    }
};

/// What a kind's metrics are stored as.
impl From<SourceKind> for model::SampleSource {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::Mock => model::SampleSource::Mock,
            SourceKind::CloudWatch => model::SampleSource::CloudWatch,
        }
    }
}

/// One `T` for every source kind: the registry of sources, targets grouped by
/// kind, counts per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerKind<T>([T; SourceKind::ALL.len()]);

impl<T> PerKind<T> {
    /// A value for each kind, made by `f`.
    pub fn from_fn(f: impl FnMut(SourceKind) -> T) -> Self {
        PerKind(SourceKind::ALL.map(f))
    }

    /// Each kind with its value, in `SourceKind::ALL` order.
    pub fn iter(&self) -> impl Iterator<Item = (SourceKind, &T)> {
        SourceKind::ALL.into_iter().zip(&self.0)
    }
}

impl<T> Index<SourceKind> for PerKind<T> {
    type Output = T;
    fn index(&self, kind: SourceKind) -> &T {
        &self.0[kind.position()]
    }
}

impl<T> IndexMut<SourceKind> for PerKind<T> {
    fn index_mut(&mut self, kind: SourceKind) -> &mut T {
        &mut self.0[kind.position()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_the_names_already_stored_in_metrics() {
        let names: Vec<&str> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["mock", "cloudwatch"]);
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SourceKind::parse("simulated"), None);
    }

    #[test]
    fn is_mock_maps_to_the_kind_and_back() {
        assert_eq!(SourceKind::from_is_mock(true), SourceKind::Mock);
        assert_eq!(SourceKind::from_is_mock(false), SourceKind::CloudWatch);
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::from_is_mock(kind.is_mock()), kind);
        }
    }

    #[test]
    fn per_kind_values_are_found_by_their_kind() {
        let mut counts = PerKind::from_fn(|kind| kind.as_str().len());
        counts[SourceKind::CloudWatch] += 1;
        assert_eq!(counts[SourceKind::Mock], 4);
        assert_eq!(counts[SourceKind::CloudWatch], 11);
        let listed: Vec<_> = counts.iter().map(|(k, n)| (k, *n)).collect();
        assert_eq!(
            listed,
            [(SourceKind::Mock, 4), (SourceKind::CloudWatch, 11)]
        );
    }
}
