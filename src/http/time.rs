//! Timestamps in responses: RFC 3339 in UTC with microseconds and a `Z`, so
//! browsers never read them as local time. Every response field that is a time is
//! an [`ApiTime`], so none can come out in another format.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

/// A time as the API writes it: `2026-01-22T05:21:00.123456Z`. Document a field
/// with `#[schema(value_type = String, format = DateTime)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiTime(pub DateTime<Utc>);

impl ApiTime {
    /// The API's spelling of `t`.
    pub fn format(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

impl From<DateTime<Utc>> for ApiTime {
    fn from(t: DateTime<Utc>) -> Self {
        ApiTime(t)
    }
}

impl Serialize for ApiTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ApiTime::format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn a_time_is_written_with_microseconds_and_a_z() {
        let t = DateTime::parse_from_rfc3339("2026-01-22T07:21:00.1234567+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            serde_json::to_string(&ApiTime(t)).unwrap(),
            r#""2026-01-22T05:21:00.123456Z""#
        );
        assert_eq!(
            serde_json::to_string(&Some(ApiTime(t.with_nanosecond(0).unwrap()))).unwrap(),
            r#""2026-01-22T05:21:00.000000Z""#
        );
    }
}
