//! What the OpenAPI document says beyond its operations: info, tags, security
//! schemes and schemas no operation names. The operations come from the routes
//! themselves (see `route.rs`); the whole document is `http::openapi()`, served at
//! `/api/openapi.json` and browsed with Swagger UI at `/api/docs`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{error, simulate};

/// The API description, without its operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cloud Resource Autoscaler API",
        version = "1.0",
        description = "Watches cloud instances, stores their metrics and decides every 15 seconds whether each needs more or less capacity. Log in, click Authorize and paste the token (without \"Bearer\")."
    ),
    components(schemas(error::ErrorBody, simulate::SimulateInstantResponse, simulate::SimulateProlongedResponse)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Is the service up: probes and Prometheus metrics"),
        (name = "auth", description = "Accounts and tokens"),
        (name = "instances", description = "Instances and their monitoring"),
        (name = "metrics", description = "Metrics, scaling decisions and load simulation"),
        (name = "policies", description = "Per-instance scaling policies, dry runs and backtests"),
        (name = "webhooks", description = "Signed scaling events POSTed to your URLs"),
        (name = "targets", description = "Scale targets: the Auto Scaling group or Kubernetes workload an instance's level drives"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` scheme the secured operations refer to, so Swagger UI's
/// Authorize button takes a token.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[cfg(test)]
mod tests {

    /// `static/openapi.json` is the committed copy of the document, for importing into
    /// Postman or generating clients without running the server. It must match what
    /// the handlers generate; `UPDATE_OPENAPI=1 cargo test` rewrites it.
    #[test]
    fn the_committed_openapi_document_is_current() {
        let generated = super::super::openapi().to_pretty_json().unwrap() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/static/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "static/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test --lib openapi"
        );
    }
}
