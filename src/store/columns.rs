//! Column lists shared by both backends' queries, as literals for `concat!` (sqlx
//! takes only `&'static str` SQL). `store/mod.rs` declares this module before the
//! backends, so their textual scope covers the macros.

/// The columns an instance row reads.
macro_rules! instance_columns {
    () => {
        "id, user_id, instance_id, instance_type, region, is_mock, is_monitoring, scale_level, \
         last_action_at, last_collected_at, last_collection_error, created_at, policy, \
         recommended_level, recommended_action_at"
    };
}

/// The columns a metric row reads.
macro_rules! metric_columns {
    () => {
        "id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, \
         is_outlier, outlier_type"
    };
}

/// The columns a decision row reads.
macro_rules! decision_columns {
    () => {
        "id, instance, ts, cpu_utilization, memory_usage, network_in, network_out, decision, \
         reason, level_before, level_after, dry_run"
    };
}

/// The columns a webhook row reads.
macro_rules! webhook_columns {
    () => {
        "id, user_id, url, events, description, secret, created_at"
    };
}

/// The columns a scale-target row reads, qualified by the table's name or alias.
macro_rules! target_columns {
    ($t:literal) => {
        concat!(
            $t,
            ".id, ",
            $t,
            ".instance, ",
            $t,
            ".spec, ",
            $t,
            ".state, ",
            $t,
            ".desired_level, ",
            $t,
            ".progress, ",
            $t,
            ".created_at, ",
            $t,
            ".updated_at"
        )
    };
}
