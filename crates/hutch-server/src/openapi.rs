//! The OpenAPI document served at `/openapi.json`, generated from the annotated handlers that the
//! routers are built from (so routes and document cannot drift).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};

/// Fills in the document's title and the two authentication schemes.
pub(crate) fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("hutch")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Self-hosted sandboxes speaking the HopX API. `/v1/*` is the control plane \
             (API key in `X-API-Key` or `Authorization: Bearer`). Every other path is a sandbox \
             agent call, routed by the sandbox's bearer token (`auth_token`).",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}
