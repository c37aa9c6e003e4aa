//! Integration tests: the real server over HTTP, on SQLite and PostgreSQL.

mod helpers;

mod auth;
mod cors;
mod dashboard;
mod deletion;
mod docs;
mod health;
mod instances;
mod jobs;
mod kube_fake;
mod login_limit;
mod metrics;
mod ownership;
mod pagination;
mod policies;
mod races;
mod request_bodies;
mod series;
mod signals;
mod store_contract;
mod targets;
mod tokens;
mod webhooks;
