//! CloudWatch source (being written).
