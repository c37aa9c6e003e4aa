//! The storage contract, run against both stores through `app.store`.

use autoscaler::collect::CollectionStatus;
use autoscaler::model::{NewMetric, SampleSource};
use autoscaler::scaling::record::{ScalingCandidate, ScalingOutcome};
use autoscaler::scaling::{Decision, Evaluation, Votes};
use autoscaler::store::{InstanceCounts, NewInstance, PageRequest, Store, StoreError};
use autoscaler::testing::TestReads;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::on_both_databases;

async fn user(store: &dyn Store, email: &str) -> Uuid {
    store.create_user(email, "$argon2id$fake").await.unwrap().id
}

fn new_instance(user: Uuid, instance_id: &str) -> NewInstance {
    NewInstance {
        user_id: user,
        instance_id: instance_id.into(),
        instance_type: "t2.micro".into(),
        region: "mock".into(),
        is_mock: true,
    }
}

async fn instance(store: &dyn Store, user: Uuid, instance_id: &str) -> Uuid {
    store
        .create_instance(&new_instance(user, instance_id))
        .await
        .unwrap()
        .id
}

fn metric(instance: Uuid, timestamp: DateTime<Utc>, cpu: f64) -> NewMetric {
    NewMetric {
        instance,
        timestamp,
        cpu_utilization: cpu,
        memory_usage: Some(50.0),
        network_in: Some(1000),
        network_out: None,
        source: SampleSource::Simulated,
    }
}

/// Now, to the whole second, so stored and compared timestamps agree exactly.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

on_both_databases! {
    async fn recent_metrics_owned_reads_only_the_owners_instance(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let bob = user(store, "bob@example.com").await;
        let id = instance(store, alice, "mock-owned").await;
        instance(store, alice, "mock-empty").await;
        let t = now();
        let batch: Vec<NewMetric> = (0..3).map(|i| metric(id, t - TimeDelta::seconds(i), 40.0 + i as f64)).collect();
        store.insert_metrics(&batch).await.unwrap();

        let owned = store.recent_metrics_owned(alice, "mock-owned", 2).await.unwrap().expect("alice exists");
        let cpus: Vec<f64> = owned.iter().map(|m| m.cpu_utilization).collect();
        assert_eq!(cpus, [40.0, 41.0], "newest first, limited");
        assert!(owned.iter().all(|m| m.instance == id));
        let read = |user: Uuid, instance_id: &'static str| async move {
            store.recent_metrics_owned(user, instance_id, 10).await.unwrap()
        };
        assert_eq!(read(bob, "mock-owned").await.map(|m| m.len()), Some(0), "not bob's");
        assert_eq!(read(alice, "mock-empty").await.map(|m| m.len()), Some(0));
        assert_eq!(read(alice, "mock-nowhere").await.map(|m| m.len()), Some(0));
        assert!(read(Uuid::new_v4(), "mock-owned").await.is_none(), "no such user");
        store.delete_user(bob).await.unwrap();
        assert!(read(bob, "mock-owned").await.is_none(), "bob is gone");
    }
}

on_both_databases! {
    async fn recent_metrics_owned_returns_exactly_what_recent_metrics_does(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let id = instance(store, alice, "mock-exact").await;
        let t = now();
        // Values that need all 17 significant digits, extremes, and timestamps shared
        // by several rows (ordered by id among themselves).
        let cpus = [
            0.1 + 0.2, 100.0 / 3.0, 99.999_999_999_999_99, 5e-324, 1e-9, 0.0, 100.0,
            12.345_678_901_234_567, 2.0_f64.sqrt(), 77.7,
        ];
        let batch: Vec<NewMetric> = cpus
            .iter()
            .enumerate()
            .map(|(i, &cpu)| NewMetric {
                memory_usage: (i % 3 != 0).then_some(cpu / 7.0),
                network_in: (i % 2 == 0).then_some(9_000_000_000_000_000 - i as i64),
                network_out: Some(i as i64),
                ..metric(id, t - TimeDelta::seconds(i as i64 / 3), cpu)
            })
            .collect();
        store.insert_metrics(&batch).await.unwrap();

        for limit in [1, 4, 10, 50] {
            let owned = store.recent_metrics_owned(alice, "mock-exact", limit).await.unwrap().unwrap();
            let plain = store.recent_metrics(id, limit).await.unwrap();
            assert_eq!(owned, plain, "limit {limit}");
            assert_eq!(owned.len(), (limit as usize).min(cpus.len()));
        }
        let mut stored: Vec<u64> = store
            .recent_metrics(id, 50)
            .await
            .unwrap()
            .iter()
            .map(|m| m.cpu_utilization.to_bits())
            .collect();
        let mut sent: Vec<u64> = cpus.iter().map(|c| c.to_bits()).collect();
        stored.sort_unstable();
        sent.sort_unstable();
        assert_eq!(stored, sent, "every value stored and read back bit for bit");
    }
}

on_both_databases! {
    async fn users_are_created_found_and_deleted(app) {
        let store = app.store.as_ref();

        let created = store.create_user("u@example.com", "$argon2id$hash").await.unwrap();

        assert_eq!((created.email.as_str(), created.password_hash.expose()), ("u@example.com", "$argon2id$hash"));
        let by_email = store.user_by_email("u@example.com").await.unwrap().expect("found by email");
        let by_id = store.user_by_id(created.id).await.unwrap().expect("found by id");
        assert_eq!((by_email.id, by_id.email.as_str()), (created.id, "u@example.com"));
        assert_eq!(by_id.created_at, created.created_at);
        assert!(store.user_by_email("other@example.com").await.unwrap().is_none());
        assert!(store.user_by_id(Uuid::new_v4()).await.unwrap().is_none());

        assert!(store.delete_user(created.id).await.unwrap());
        assert!(store.user_by_id(created.id).await.unwrap().is_none());
        assert!(!store.delete_user(created.id).await.unwrap());
    }

    async fn a_taken_email_is_a_conflict(app) {
        let store = app.store.as_ref();
        user(store, "dup@example.com").await;

        let err = store.create_user("dup@example.com", "$argon2id$other").await.unwrap_err();

        assert!(matches!(err, StoreError::Conflict), "{err:?}");
    }

    async fn deleting_a_user_removes_their_instances_and_metrics(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let id = instance(store, owner, "mock-1").await;
        store.insert_metrics(&[metric(id, now(), 10.0)]).await.unwrap();

        assert!(store.delete_user(owner).await.unwrap());

        assert!(store.instance_by_instance_id("mock-1").await.unwrap().is_none());
        assert!(store.recent_metrics(id, 10).await.unwrap().is_empty());
    }

    async fn instances_are_created_fresh_and_listed_oldest_first(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let other = user(store, "other@example.com").await;

        let first = store.create_instance(&new_instance(owner, "mock-1")).await.unwrap();
        let second = store.create_instance(&new_instance(owner, "mock-2")).await.unwrap();
        instance(store, other, "mock-3").await;

        assert_eq!(
            (first.user_id, first.instance_id.as_str(), first.instance_type.as_str(), first.region.as_str()),
            (owner, "mock-1", "t2.micro", "mock")
        );
        assert!(first.is_mock && !first.is_monitoring);
        assert_eq!(first.scale_level, 1);
        assert_eq!((first.last_action_at, first.last_collected_at, first.last_collection_error.as_deref()), (None, None, None));
        let listed: Vec<Uuid> = store.instances_of(owner).await.unwrap().iter().map(|i| i.id).collect();
        assert_eq!(listed, [first.id, second.id]);
        let found = store.instance_by_instance_id("mock-2").await.unwrap().expect("found");
        assert_eq!((found.id, found.created_at), (second.id, second.created_at));
        assert!(store.instance_by_instance_id("mock-9").await.unwrap().is_none());
        assert!(store.instances_of(Uuid::new_v4()).await.unwrap().is_empty());
    }

    async fn an_instance_id_is_unique_across_users(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let other = user(store, "other@example.com").await;
        instance(store, owner, "mock-1").await;

        for who in [owner, other] {
            let err = store.create_instance(&new_instance(who, "mock-1")).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict), "{err:?}");
        }
        assert_eq!(store.instances_of(other).await.unwrap().len(), 0);
    }

    async fn set_monitoring_reports_whether_it_changed_anything(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let id = instance(store, owner, "mock-1").await;
        instance(store, owner, "mock-2").await;

        assert!(store.set_monitoring(id, true).await.unwrap());
        assert!(!store.set_monitoring(id, true).await.unwrap());
        assert_eq!(store.instance_counts(owner).await.unwrap(), InstanceCounts { instances: 2, monitoring: 1 });
        assert!(store.set_monitoring(id, false).await.unwrap());
        assert!(!store.set_monitoring(id, false).await.unwrap());
        assert_eq!(store.instance_counts(owner).await.unwrap(), InstanceCounts { instances: 2, monitoring: 0 });
        assert!(!store.set_monitoring(Uuid::new_v4(), true).await.unwrap());
    }

    async fn recent_metrics_are_the_newest_first_up_to_the_limit(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let id = instance(store, owner, "mock-1").await;
        let other = instance(store, owner, "mock-2").await;
        let t = now();
        // Inserted out of order: the order comes from the timestamps.
        let batch = [metric(id, t - TimeDelta::seconds(60), 1.0), metric(id, t, 3.0), metric(id, t - TimeDelta::seconds(30), 2.0)];

        let stored = store.insert_metrics(&batch).await.unwrap();
        store.insert_metrics(&[metric(other, t, 99.0)]).await.unwrap();

        assert_eq!(stored.len(), 3);
        assert_eq!(stored[1].timestamp, t);
        let all = store.recent_metrics(id, 10).await.unwrap();
        let cpus: Vec<f64> = all.iter().map(|m| m.cpu_utilization).collect();
        assert_eq!(cpus, [3.0, 2.0, 1.0]);
        assert_eq!(all[0], stored[1], "a metric reads back as its insert returned it");
        assert_eq!((all[0].memory_usage, all[0].network_in, all[0].network_out), (Some(50.0), Some(1000), None));
        assert!(!all[0].is_outlier && all[0].outlier_type.is_none());
        let newest_two: Vec<f64> = store.recent_metrics(id, 2).await.unwrap().iter().map(|m| m.cpu_utilization).collect();
        assert_eq!(newest_two, [3.0, 2.0]);
        assert!(store.recent_decisions(id, 10).await.unwrap().is_empty());
    }

    async fn sub_second_timestamps_survive_a_round_trip_to_the_microsecond(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let id = instance(store, owner, "mock-1").await;
        let t = Utc::now();

        let stored = store.insert_metrics(&[metric(id, t, 1.0)]).await.unwrap();

        assert_eq!(stored[0].timestamp, t.trunc_subsecs(6));
        assert_eq!(store.recent_metrics(id, 1).await.unwrap()[0].timestamp, t.trunc_subsecs(6));
    }

    async fn a_batch_of_metrics_is_stored_all_or_none(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let id = instance(store, owner, "mock-1").await;
        let t = now();
        let mut batch: Vec<NewMetric> = (0..50).map(|i| metric(id, t - TimeDelta::seconds(i), 10.0)).collect();
        // One metric of an instance that does not exist breaks the foreign key.
        batch.insert(25, metric(Uuid::new_v4(), t, 10.0));

        let result = store.insert_metrics(&batch).await;

        assert!(result.is_err(), "a batch with a dangling instance was stored");
        assert!(store.recent_metrics(id, 100).await.unwrap().is_empty());
    }

    async fn an_empty_batch_of_metrics_stores_nothing(app) {
        let store = app.store.as_ref();

        let stored = store.insert_metrics(&[]).await.unwrap();

        assert!(stored.is_empty());
    }

    async fn claim_scaling_hands_out_each_monitored_instance_once_per_slot(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let watched = instance(store, owner, "mock-on").await;
        let also_watched = instance(store, owner, "mock-on-2").await;
        instance(store, owner, "mock-off").await;
        store.set_monitoring(watched, true).await.unwrap();
        store.set_monitoring(also_watched, true).await.unwrap();
        let ids = |c: Vec<ScalingCandidate>| {
            let mut ids: Vec<Uuid> = c.into_iter().map(|c| c.id).collect();
            ids.sort();
            ids
        };
        let mut both = vec![watched, also_watched];
        both.sort();

        let first = store.claim_scaling(100, 1000).await.unwrap();
        assert_eq!(first.iter().map(|c| c.level).collect::<Vec<_>>(), [1, 1]);
        assert!(first.iter().all(|c| c.last_action_at.is_none() && c.last_decision.is_none()));
        assert_eq!(ids(first), both);
        assert!(store.claim_scaling(100, 1000).await.unwrap().is_empty(), "claimed twice in one slot");
        assert!(store.claim_scaling(99, 1000).await.unwrap().is_empty(), "an older slot claimed again");

        assert_eq!(ids(store.claim_scaling(101, 1000).await.unwrap()), both);

        store.set_monitoring(also_watched, false).await.unwrap();
        assert_eq!(ids(store.claim_scaling(102, 1000).await.unwrap()), [watched]);
    }

    async fn claim_scaling_respects_the_limit_and_hands_out_the_rest_next(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        for n in 0..5 {
            let id = instance(store, owner, &format!("mock-{n}")).await;
            store.set_monitoring(id, true).await.unwrap();
        }

        let mut seen: Vec<Uuid> = Vec::new();
        for _ in 0..3 {
            let batch = store.claim_scaling(7, 2).await.unwrap();
            assert!(batch.len() <= 2);
            seen.extend(batch.into_iter().map(|c| c.id));
        }

        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5);
        assert!(store.claim_scaling(7, 2).await.unwrap().is_empty());
    }

    async fn windows_returns_exactly_the_samples_in_since_until(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let a = instance(store, owner, "mock-a").await;
        let b = instance(store, owner, "mock-b").await;
        let c = instance(store, owner, "mock-c").await;
        let until = now();
        let since = until - TimeDelta::minutes(5);
        let at = |secs: i64| since + TimeDelta::seconds(secs);
        store
            .insert_metrics(&[
                metric(a, at(-1), 1.0),  // before the window
                metric(a, at(0), 2.0),   // at `since`: excluded
                metric(a, at(1), 3.0),   // first inside
                metric(a, at(300), 4.0), // at `until`: included
                metric(a, at(301), 5.0), // after the window
                metric(b, at(150), 6.0),
                metric(c, at(150), 7.0), // not asked for
            ])
            .await
            .unwrap();

        let mut got: Vec<(Uuid, f64, DateTime<Utc>)> = store
            .windows(&[a, b], since, until)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, s)| (id, s.cpu, s.timestamp))
            .collect();
        got.sort_by(|x, y| x.1.total_cmp(&y.1));

        assert_eq!(got, [(a, 3.0, at(1)), (a, 4.0, at(300)), (b, 6.0, at(150))]);
        assert!(store.windows(&[], since, until).await.unwrap().is_empty());
    }

    async fn window_samples_carry_the_stored_values(app) {
        let store = app.store.as_ref();
        let owner = user(store, "owner@example.com").await;
        let a = instance(store, owner, "mock-a").await;
        let t = now();
        let stored = store.insert_metrics(&[metric(a, t, 42.5)]).await.unwrap();

        let window = store.windows(&[a], t - TimeDelta::minutes(1), t).await.unwrap();

        assert_eq!(window.len(), 1);
        let (instance, sample) = &window[0];
        assert_eq!(*instance, a);
        assert_eq!(
            (sample.id, sample.timestamp, sample.cpu, sample.memory, sample.network_in, sample.network_out, sample.is_outlier),
            (stored[0].id, t, 42.5, Some(50.0), Some(1000.0), None, false)
        );
    }
}

on_both_databases! {
    async fn batch_writes_to_the_same_instances_at_once_all_go_through(app) {
        // The collection and scaling jobs write the same instances at the same
        // moments, each batch in an order of its own; no write may be lost to a
        // deadlock between them.
        let owner = user(app.store.as_ref(), "busy@example.com").await;
        let mut ids = Vec::new();
        for i in 0..200 {
            ids.push(instance(app.store.as_ref(), owner, &format!("mock-{i}")).await);
        }
        const ROUNDS: i64 = 10;
        let start = now();
        let writers = (0..8).map(|writer: usize| {
            let store = app.store.clone();
            let mut order = ids.clone();
            order.rotate_left(writer * 25);
            if writer % 4 >= 2 {
                order.reverse();
            }
            async move {
                for round in 0..ROUNDS {
                    let at = start + TimeDelta::seconds(round);
                    if writer.is_multiple_of(2) {
                        let statuses: Vec<CollectionStatus> = order
                            .iter()
                            .map(|&instance| CollectionStatus {
                                instance,
                                last_collected_at: Some(at),
                                error: Some(format!("round {round}")),
                            })
                            .collect();
                        store.record_collection(&[], &statuses).await?;
                    } else {
                        let outcomes: Vec<ScalingOutcome> = order
                            .iter()
                            .map(|&instance| ScalingOutcome {
                                instance,
                                instance_id: String::new(),
                                level_before: 1,
                                evaluation: Evaluation {
                                    decision: Decision::NoAction,
                                    reason: format!("round {round}"),
                                    new_level: 1,
                                    votes: Votes { up: 0, down: 0 },
                                    outlier: None,
                                    latest: None,
                                },
                                record: true,
                                decided_at: at,
                                dry_run: false,
                            })
                            .collect();
                        store.apply_scaling(&outcomes).await?;
                    }
                }
                Ok::<_, StoreError>(())
            }
        });
        for (writer, result) in futures::future::join_all(writers).await.into_iter().enumerate() {
            assert!(result.is_ok(), "writer {writer}: {result:?}");
        }

        let last = start + TimeDelta::seconds(ROUNDS - 1);
        let stored = app.store.instances_of(owner).await.unwrap();
        assert_eq!(stored.len(), ids.len());
        for instance in stored {
            assert_eq!(instance.last_collected_at, Some(last));
            assert_eq!(instance.last_collection_error.as_deref(), Some("round 9"));
        }
        // Four scaling writers, ten rounds, a decision row per instance each time.
        let decisions = app.store.recent_decisions(ids[0], 1000).await.unwrap();
        assert_eq!(decisions.len(), 40);
    }
}

on_both_databases! {
    async fn history_reads_the_span_oldest_first_across_pages(app) {
        use futures::TryStreamExt;
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let id = instance(store, alice, "mock-history").await;
        let other = instance(store, alice, "mock-other").await;
        let t0 = now() - TimeDelta::days(1);
        // Three samples a second, so that a page's end (SQLite reads 4,096 at a time)
        // falls between two samples of one second; every other cpu is a value the
        // packed read sends as text rather than as a scaled integer.
        let mut stored = Vec::new();
        for chunk in (0..9_000i64).collect::<Vec<_>>().chunks(1_000) {
            let batch: Vec<NewMetric> = chunk
                .iter()
                .map(|&i| {
                    let cpu = if i % 2 == 0 { 40.0 } else { 40.0 + i as f64 / 7.0 };
                    metric(id, t0 + TimeDelta::seconds(i / 3), cpu)
                })
                .collect();
            stored.extend(store.insert_metrics(&batch).await.unwrap());
        }
        store.insert_metrics(&[metric(other, t0 + TimeDelta::seconds(10), 99.0)]).await.unwrap();

        // (since, until]: the first second's three samples and the last second's are out.
        let (since, until) = (t0, t0 + TimeDelta::seconds(2_998));
        let read: Vec<_> = store.history(id, since, until).try_collect().await.unwrap();
        let mut expected: Vec<_> =
            stored.iter().filter(|m| m.timestamp > since && m.timestamp <= until).collect();
        expected.sort_by_key(|m| (m.timestamp, m.id));
        assert_eq!(read.len(), 8_994);
        assert_eq!(expected.len(), 8_994);
        for (sample, m) in read.iter().zip(expected) {
            assert_eq!(
                (sample.id, sample.timestamp, sample.cpu, sample.memory),
                (m.id, m.timestamp, m.cpu_utilization, m.memory_usage)
            );
            assert_eq!(
                (sample.network_in, sample.network_out, sample.is_outlier),
                (m.network_in.map(|v| v as f64), m.network_out.map(|v| v as f64), false)
            );
        }
    }
}

// --- the counts behind every page's `total` ---
//
// `metric_count` and `decision_count` on an instance's row are what the pages report
// as `total`: PostgreSQL keeps them by explicit updates in each write, SQLite by
// triggers. One test per write path holds both to the rows actually there.

/// Asserts that `instance`'s pages report `metrics` and `decisions` as their totals,
/// and that those are the rows a read finds.
async fn assert_totals(
    store: &dyn Store,
    instance: Uuid,
    metrics: i64,
    decisions: i64,
    what: &str,
) {
    let all = PageRequest {
        limit: 10_000,
        offset: 0,
    };
    let m = store.metrics_page(instance, all).await.unwrap();
    let d = store.decisions_page(instance, all).await.unwrap();
    assert_eq!(
        (m.total, d.total),
        (metrics, decisions),
        "totals after {what}"
    );
    assert_eq!(
        (m.items.len() as i64, d.items.len() as i64),
        (metrics, decisions),
        "rows after {what}"
    );
}

/// An outcome that writes a `no_action` row for `instance` (no level change).
fn quiet(instance: Uuid, at: DateTime<Utc>, reason: &str) -> ScalingOutcome {
    ScalingOutcome {
        instance,
        instance_id: String::new(),
        level_before: 1,
        evaluation: Evaluation {
            decision: Decision::NoAction,
            reason: reason.into(),
            new_level: 1,
            votes: Votes { up: 0, down: 0 },
            outlier: None,
            latest: None,
        },
        record: true,
        decided_at: at,
        dry_run: false,
    }
}

on_both_databases! {
    async fn inserted_metrics_are_counted_per_instance(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b) = (instance(store, alice, "mock-a").await, instance(store, alice, "mock-b").await);
        let t = now();
        let mut batch: Vec<NewMetric> = (0..3).map(|i| metric(a, t - TimeDelta::seconds(i), 10.0)).collect();
        batch.extend((0..2).map(|i| metric(b, t - TimeDelta::seconds(i), 20.0)));

        store.insert_metrics(&batch).await.unwrap();
        store.insert_metrics(&[metric(a, t + TimeDelta::seconds(1), 30.0)]).await.unwrap();

        assert_totals(store, a, 4, 0, "two inserts").await;
        assert_totals(store, b, 2, 0, "one insert").await;
    }

    async fn replacing_metrics_counts_only_the_new_ones(app) {
        // What a simulation with `clear_existing` does.
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b) = (instance(store, alice, "mock-a").await, instance(store, alice, "mock-b").await);
        let t = now();
        let old: Vec<NewMetric> = (0..5).map(|i| metric(a, t - TimeDelta::seconds(i), 10.0)).collect();
        store.insert_metrics(&old).await.unwrap();
        store.insert_metrics(&[metric(b, t, 10.0)]).await.unwrap();

        let new: Vec<NewMetric> = (0..2).map(|i| metric(a, t + TimeDelta::seconds(i), 90.0)).collect();
        store.replace_metrics(a, &new).await.unwrap();
        assert_totals(store, a, 2, 0, "a replace").await;
        store.replace_metrics(a, &[]).await.unwrap();
        assert_totals(store, a, 0, 0, "a replace with nothing").await;
        assert_totals(store, b, 1, 0, "another instance's replace").await;
    }

    async fn collected_metrics_are_counted_and_a_stored_datapoint_is_not_counted_again(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b, c) = (
            instance(store, alice, "i-a").await,
            instance(store, alice, "i-b").await,
            instance(store, alice, "i-c").await,
        );
        let t = now();
        let cloudwatch = |instance, secs| NewMetric {
            source: SampleSource::CloudWatch,
            ..metric(instance, t - TimeDelta::seconds(secs), 50.0)
        };
        let status = |instance| CollectionStatus { instance, last_collected_at: Some(t), error: None };

        // `c` gets metrics without a status of its own.
        let first = [cloudwatch(a, 60), cloudwatch(a, 0), cloudwatch(b, 0), cloudwatch(c, 0)];
        store.record_collection(&first, &[status(a), status(b)]).await.unwrap();
        // `a`'s datapoint at t is stored already; only the one at t - 30 s is new.
        store.record_collection(&[cloudwatch(a, 0), cloudwatch(a, 30)], &[status(a)]).await.unwrap();

        assert_totals(store, a, 3, 0, "two collections, one repeated datapoint").await;
        assert_totals(store, b, 1, 0, "one collection").await;
        assert_totals(store, c, 1, 0, "metrics without a status").await;
    }

    async fn decisions_are_counted_per_row_even_two_for_one_instance_in_one_batch(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b) = (instance(store, alice, "mock-a").await, instance(store, alice, "mock-b").await);
        let t = now();

        store
            .apply_scaling(&[quiet(a, t, "first"), quiet(b, t, "only"), quiet(a, t, "second")])
            .await
            .unwrap();
        assert_totals(store, a, 0, 2, "two decisions for one instance in one batch").await;
        assert_totals(store, b, 0, 1, "one decision").await;

        store.apply_scaling(&[quiet(a, t + TimeDelta::seconds(15), "third")]).await.unwrap();
        assert_totals(store, a, 0, 3, "another batch").await;
    }

    async fn deleting_an_instance_leaves_the_other_counts_alone(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b) = (instance(store, alice, "mock-a").await, instance(store, alice, "mock-b").await);
        let t = now();
        store.insert_metrics(&[metric(a, t, 1.0), metric(b, t, 2.0), metric(b, t - TimeDelta::seconds(1), 3.0)]).await.unwrap();
        store.apply_scaling(&[quiet(a, t, "a"), quiet(b, t, "b")]).await.unwrap();

        assert_eq!(store.delete_instance(a).await.unwrap(), autoscaler::store::Deletion::Deleted);

        assert_totals(store, a, 0, 0, "its deletion").await;
        assert_totals(store, b, 2, 1, "another instance's deletion").await;
    }

    async fn retention_takes_what_it_deletes_off_the_counts(app) {
        let store = app.store.as_ref();
        let alice = user(store, "alice@example.com").await;
        let (a, b) = (instance(store, alice, "mock-a").await, instance(store, alice, "mock-b").await);
        let t = now();
        let day = TimeDelta::days(1);
        let mut batch: Vec<NewMetric> = (0..5).map(|i| metric(a, t - day * 10 - TimeDelta::seconds(i), 1.0)).collect();
        batch.extend((0..2).map(|i| metric(a, t - TimeDelta::seconds(i), 1.0)));
        batch.extend((0..3).map(|i| metric(b, t - day * 10 - TimeDelta::seconds(i), 1.0)));
        store.insert_metrics(&batch).await.unwrap();
        store
            .apply_scaling(&[quiet(a, t - day * 40, "old"), quiet(b, t - day * 40, "old"), quiet(b, t - day * 35, "old")])
            .await
            .unwrap();
        store.apply_scaling(&[quiet(a, t, "new")]).await.unwrap();

        // Batches of 3 rows: several rounds, as the retention tick runs them.
        let mut deleted = 0;
        loop {
            let n = store.purge(t - day * 7, t - day * 30, 3).await.unwrap();
            deleted += n;
            if n == 0 {
                break;
            }
        }

        assert_eq!(deleted, 5 + 3 + 3);
        assert_totals(store, a, 2, 1, "retention").await;
        assert_totals(store, b, 0, 0, "retention").await;
    }
}
