//! Registering, listing and monitoring instances.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_recent, error, take_time, take_uuid};
use crate::on_both_databases;

/// The instance object a fresh registration shows, with id and created_at redacted.
fn fresh_instance(instance_id: &str, region: &str, is_mock: bool) -> Value {
    json!({
        "id": "<uuid>",
        "instance_id": instance_id,
        "instance_type": "t2.micro",
        "region": region,
        "is_monitoring": false,
        "is_mock": is_mock,
        "cpu_capacity": 100.0,
        "memory_capacity": 100.0,
        "network_capacity": 100.0,
        "current_scale_level": 1,
        "created_at": "<timestamp>",
        "last_collected_at": null,
        "last_collection_error": null,
        "policy_mode": "enforce",
        "recommended_scale_level": 1,
        "target_kind": null,
        "actuation_state": null,
    })
}

const REQUIRED: &str = "instance_id, instance_type, and region are required";

on_both_databases! {
    async fn registering_a_mock_instance_answers_201_with_the_full_instance(app) {
        let token = app.user("owner@example.com").await;

        let (status, mut body) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "mock-test-1", "instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            )
            .await;

        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = take_uuid(&mut body, "/instance/id");
        assert_recent(take_time(&mut body, "/instance/created_at"), 60);
        assert_eq!(
            body,
            json!({"message": "Instance registered successfully", "instance": fresh_instance("mock-test-1", "mock", true)})
        );
        assert_eq!(app.instance_uuid("mock-test-1").await, id);
    }

    async fn registering_a_real_instance_answers_201_with_the_full_instance(app) {
        let token = app.user("owner@example.com").await;

        let (status, mut body) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "i-1234567890abcdef0", "instance_type": "t2.micro", "region": "us-east-1", "is_mock": false}),
            )
            .await;

        assert_eq!(status, StatusCode::CREATED, "{body}");
        take_uuid(&mut body, "/instance/id");
        take_time(&mut body, "/instance/created_at");
        assert_eq!(
            body,
            json!({"message": "Instance registered successfully", "instance": fresh_instance("i-1234567890abcdef0", "us-east-1", false)})
        );
    }

    async fn an_instance_without_is_mock_is_a_real_one(app) {
        let token = app.user("owner@example.com").await;

        let (status, body) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "i-0123abcd", "instance_type": "t3.small", "region": "eu-west-2"}),
            )
            .await;

        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["instance"]["is_mock"], false);
        assert_eq!(body["instance"]["instance_type"], "t3.small");
    }

    async fn listing_instances_shows_the_users_instances_oldest_first(app) {
        let token = app.user("owner@example.com").await;
        let first = app.mock_instance(&token, "mock-a").await;
        let second = app.mock_instance(&token, "mock-b").await;
        app.patch("/api/instances/mock-b/monitor/start", &token).await;

        let (status, mut body) = app.get("/api/instances/", &token).await;

        assert_eq!(status, StatusCode::OK);
        assert_eq!(take_uuid(&mut body, "/instances/0/id").to_string(), first["id"].as_str().unwrap());
        assert_eq!(take_uuid(&mut body, "/instances/1/id").to_string(), second["id"].as_str().unwrap());
        let created_a = take_time(&mut body, "/instances/0/created_at");
        let created_b = take_time(&mut body, "/instances/1/created_at");
        assert!(created_a <= created_b);
        let mut monitored = fresh_instance("mock-b", "mock", true);
        monitored["is_monitoring"] = json!(true);
        assert_eq!(body, json!({"instances": [fresh_instance("mock-a", "mock", true), monitored]}));
    }

    async fn a_user_without_instances_gets_an_empty_list(app) {
        let token = app.user("empty@example.com").await;

        let (status, body) = app.get("/api/instances/", &token).await;

        assert_eq!((status, body), (StatusCode::OK, json!({"instances": []})));
    }

    async fn instance_paths_answer_with_and_without_a_trailing_slash(app) {
        let token = app.user("owner@example.com").await;
        let mock = |id: &str| json!({"instance_id": id, "instance_type": "t2.micro", "region": "mock", "is_mock": true});

        let (status, _) = app.post("/api/instances", Some(&token), mock("mock-no-slash")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, _) = app.post("/api/instances/", Some(&token), mock("mock-slash")).await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, without) = app.get("/api/instances", &token).await;
        assert_eq!(status, StatusCode::OK);
        let (status, with) = app.get("/api/instances/", &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(without, with);
        assert_eq!(with["instances"].as_array().unwrap().len(), 2);

        let (status, body) = app.patch("/api/instances/mock-slash/monitor/start/", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Monitoring started successfully"})));
        let (status, body) = app.patch("/api/instances/mock-slash/monitor/stop/", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Monitoring stopped successfully"})));
    }

    async fn registering_without_id_type_or_region_is_400(app) {
        let token = app.user("owner@example.com").await;
        for body in [
            json!({}),
            json!({"instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            json!({"instance_id": "mock-x", "region": "mock", "is_mock": true}),
            json!({"instance_id": "mock-x", "instance_type": "t2.micro", "is_mock": true}),
            json!({"instance_id": "  ", "instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            json!({"instance_id": "mock-x", "instance_type": "", "region": "mock", "is_mock": true}),
        ] {
            let (status, resp) = app.post("/api/instances/", Some(&token), body.clone()).await;
            assert_eq!((status, resp), (StatusCode::BAD_REQUEST, error(REQUIRED)), "{body}");
        }
        let (_, list) = app.get("/api/instances/", &token).await;
        assert_eq!(list, json!({"instances": []}));
    }

    async fn a_real_instance_needs_an_ec2_id_and_an_aws_region(app) {
        let token = app.user("owner@example.com").await;
        let bad_id = "instance_id must be an EC2 instance id: 'i-' followed by 8 or 17 hex digits (use \"is_mock\": true for a mock instance)";
        let bad_region = "region must be an AWS region name such as us-east-1";
        for (instance_id, region, message) in [
            ("mock-test-1", "us-east-1", bad_id),
            ("i-123", "us-east-1", bad_id),
            ("i-1234567890ABCDEF0", "us-east-1", bad_id),
            ("i-1234567890abcdef0", "mock", bad_region),
            ("i-1234567890abcdef0", "us-east-1a", bad_region),
        ] {
            let (status, body) = app
                .post(
                    "/api/instances/",
                    Some(&token),
                    json!({"instance_id": instance_id, "instance_type": "t2.micro", "region": region, "is_mock": false}),
                )
                .await;
            assert_eq!((status, body), (StatusCode::BAD_REQUEST, error(message)), "{instance_id} {region}");
        }
        let (_, list) = app.get("/api/instances/", &token).await;
        assert_eq!(list, json!({"instances": []}));
    }

    async fn a_mock_instance_id_must_be_safe_in_a_url_path(app) {
        let token = app.user("owner@example.com").await;

        let (status, body) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "a/b", "instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            )
            .await;

        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                error("instance_id must be 1-128 characters of letters, digits, '-', '_' or '.'")
            )
        );
    }

    async fn registering_an_instance_id_twice_is_409(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-dup").await;

        let (status, body) = app
            .post(
                "/api/instances/",
                Some(&token),
                json!({"instance_id": "mock-dup", "instance_type": "t3.large", "region": "mock", "is_mock": true}),
            )
            .await;

        assert_eq!((status, body), (StatusCode::CONFLICT, error("Instance already registered")));
    }

    async fn registering_another_users_instance_id_is_409_and_changes_nothing(app) {
        let token_a = app.user("a@example.com").await;
        let token_b = app.user("b@example.com").await;
        app.mock_instance(&token_a, "mock-taken").await;

        let (status, body) = app
            .post(
                "/api/instances/",
                Some(&token_b),
                json!({"instance_id": "mock-taken", "instance_type": "t2.micro", "region": "mock", "is_mock": true}),
            )
            .await;

        assert_eq!((status, body), (StatusCode::CONFLICT, error("Instance already registered")));
        let (_, list_b) = app.get("/api/instances/", &token_b).await;
        assert_eq!(list_b, json!({"instances": []}));
        let stored = app.store.instance_by_instance_id("mock-taken").await.unwrap().unwrap();
        assert_eq!(stored.user_id, app.user_id(&token_a).await);
    }

    async fn starting_and_stopping_monitoring_answer_200_and_switch_the_instance(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-mon").await;

        let (status, body) = app.patch("/api/instances/mock-mon/monitor/start", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Monitoring started successfully"})));
        let (_, list) = app.get("/api/instances/", &token).await;
        assert_eq!(list["instances"][0]["is_monitoring"], true);

        let (status, body) = app.patch("/api/instances/mock-mon/monitor/stop", &token).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"message": "Monitoring stopped successfully"})));
        let (_, list) = app.get("/api/instances/", &token).await;
        assert_eq!(list["instances"][0]["is_monitoring"], false);
    }

    async fn starting_monitoring_twice_is_400(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-twice").await;
        app.patch("/api/instances/mock-twice/monitor/start", &token).await;

        let (status, body) = app.patch("/api/instances/mock-twice/monitor/start", &token).await;

        assert_eq!((status, body), (StatusCode::BAD_REQUEST, error("Monitoring is already active for this instance")));
        assert!(app.store.instance_by_instance_id("mock-twice").await.unwrap().unwrap().is_monitoring);
    }

    async fn stopping_an_unmonitored_instance_is_400(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-idle").await;

        let (status, body) = app.patch("/api/instances/mock-idle/monitor/stop", &token).await;

        assert_eq!((status, body), (StatusCode::BAD_REQUEST, error("Monitoring is not active for this instance")));
    }

    async fn monitoring_an_unknown_instance_is_404(app) {
        let token = app.user("owner@example.com").await;
        for path in ["/api/instances/mock-nope/monitor/start", "/api/instances/mock-nope/monitor/stop"] {
            let (status, body) = app.patch(path, &token).await;
            assert_eq!((status, body), (StatusCode::NOT_FOUND, error("Instance not found")), "{path}");
        }
    }

    async fn monitor_routes_take_only_patch(app) {
        let token = app.user("owner@example.com").await;
        app.mock_instance(&token, "mock-m").await;

        let (status, body) = app.call(Method::POST, "/api/instances/mock-m/monitor/start", Some(&token), None).await;

        assert_eq!((status, body), (StatusCode::METHOD_NOT_ALLOWED, error("Method not allowed")));
    }
}
