//! Integration tests: the real server over HTTP, on SQLite and PostgreSQL.

mod helpers;

mod auth;
mod cors;
mod docs;
mod health;
mod instances;
mod jobs;
mod login_limit;
mod metrics;
mod ownership;
mod races;
mod request_bodies;
mod signals;
mod store_contract;
mod tokens;
mod webhooks;
