//! The FHIR R4 REST API over HTTP: routing, content negotiation, headers, and the
//! mapping of every interaction onto the record store.
//!
//! This is the only crate that knows HTTP. Every request is authenticated and
//! authorised first (`auth`).

mod access;
pub mod audit;
pub mod auth;
mod body;
mod bundle;
mod capability;
mod conditional;
mod consents;
mod disclosure;
mod drain;
mod drg;
mod duplicates;
mod error;
mod everything;
pub mod export;
mod extract;
mod format;
pub mod glass;
mod history;
mod instance;
pub mod load;
mod mpi;
mod patch;
mod profiles;
mod references;
mod response;
mod restrict;
mod search;
mod searchset;
mod subset;
mod terminology;
pub mod tls;
mod validate;
mod write;
mod write_limit;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use store::Store;
use tower_http::catch_panic::CatchPanicLayer;

pub use crate::mpi::{ENTERPRISE_SYSTEM, MpiConfig};
pub use auth::Auth;
pub use error::ApiError;
pub use validate::ValidationMode;

/// Server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The FHIR base URL as clients reach it, without a trailing slash, e.g. `http://127.0.0.1:8080/fhir`.
    pub base_url: String,
    pub limits: Limits,
    /// What validation does to writes.
    pub validation: ValidationMode,
    /// How requests are authenticated.
    pub auth: Auth,
    /// The master patient index.
    pub mpi: MpiConfig,
    /// How long a break-the-glass grant lasts, in minutes.
    pub break_glass_minutes: u64,
    /// Whether every interaction is recorded on the audit trail (off only for
    /// measurements: `--insecure-no-audit`).
    pub audit: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            base_url: "http://127.0.0.1:8080/fhir".into(),
            limits: Limits::default(),
            validation: ValidationMode::Strict,
            auth: Auth::Open,
            mpi: MpiConfig::default(),
            break_glass_minutes: 60,
            audit: true,
        }
    }
}

/// Every limit the server enforces, in one place.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted, in bytes (413 above it).
    pub body_bytes: usize,
    /// Page size when a request gives no `_count`.
    pub page_size_default: usize,
    /// Largest page size; a larger `_count` is lowered to it.
    pub page_size_max: usize,
    /// Largest bulk export output file, in bytes: the next resource goes to a new file
    /// (a single larger resource gets a file of its own).
    pub export_file_bytes: u64,
    /// Bulk export jobs running at once (429 above it).
    pub export_jobs: usize,
    /// Failed password logins of one user name before it is locked out.
    pub login_failures_max: u32,
    /// How long a locked-out user name stays locked, in seconds.
    pub login_lockout_s: u64,
    /// Codes per `ValueSet/$expand` page when the request gives no `count`.
    pub expansion_count_default: usize,
    /// Largest `$expand` page; a larger `count` is lowered to it.
    pub expansion_count_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body_bytes: 64 * 1024 * 1024,
            page_size_default: 50,
            page_size_max: 1000,
            export_file_bytes: 256 * 1024 * 1024,
            export_jobs: 2,
            login_failures_max: 5,
            login_lockout_s: 300,
            expansion_count_default: 100,
            expansion_count_max: 1000,
        }
    }
}

/// What every handler shares: one pointer, since every layer and handler clones it for
/// every request.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state behind [`AppState`].
pub(crate) struct Shared {
    pub store: Store,
    pub config: Arc<Config>,
    pub capability: Arc<serde_json::Value>,
    pub profiles: Arc<profiles::ProfileRegistry>,
    /// Serialise conditional writes per resource type.
    pub locks: Arc<conditional::Locks>,
    /// Bulk export jobs, under `<data dir>/export`.
    pub exports: Arc<export::Jobs>,
    /// Bearer tokens verified already.
    pub tokens: Arc<auth::cache::TokenCache>,
    /// The index of every current Patient, and its duplicate checks.
    pub mpi: Arc<crate::mpi::Mpi>,
    /// The active patient-privacy Consents.
    pub consents: Arc<consents::Consents>,
    /// Break-the-glass grants in force.
    pub grants: Arc<glass::Grants>,
    /// Which clients and users act for recipients outside the organisation.
    pub recipients: Arc<disclosure::Recipients>,
    /// The audit trail's background writer; `None` when auditing is off.
    pub audit: Option<Arc<audit::Trail>>,
}

impl AppState {
    /// The state for `store`: it first learns the profiles stored in it and indexes its
    /// Patients, and starts the duplicate checks.
    async fn new(store: Store, config: Config) -> Result<AppState, store::StoreError> {
        let capability = Arc::new(capability::statement(&config));
        let profiles = Arc::new(profiles::ProfileRegistry::load(&store).await?);
        profiles.follow(store.clone());
        let export_dir = store.data_dir().map(|dir| dir.join("export"));
        let exports = Arc::new(export::Jobs::open(export_dir));
        let (index, jobs) = crate::mpi::Mpi::load(&store, &config.mpi).await?;
        let enabled = config.mpi.enabled;
        let grants = Arc::new(glass::Grants::load(&store).await?);
        let audit = config.audit.then(|| audit::Trail::start(store.clone()));
        let state = Shared {
            store,
            config: Arc::new(config),
            capability,
            profiles,
            locks: Arc::default(),
            exports,
            tokens: Arc::default(),
            mpi: Arc::new(index),
            consents: Arc::default(),
            grants,
            recipients: Arc::default(),
            audit,
        };
        let state = AppState(Arc::new(state));
        if enabled {
            crate::mpi::spawn_worker(jobs, state.clone());
            crate::mpi::follow_other_servers(state.clone());
        }
        Ok(state)
    }
}

/// The HTTP application: `/fhir/...` and `/health`. It first learns the profiles stored
/// in `store`.
pub async fn router(store: Store, config: Config) -> Result<Router, store::StoreError> {
    let state = AppState::new(store, config).await?;
    let fhir = Router::new()
        .route("/metadata", get(capability::metadata))
        .route("/", get(search::system_get).post(bundle::base_post))
        .route("/_search", axum::routing::post(search::system_post))
        .route("/_history", get(history::system))
        .route("/$export", get(export::system).post(export::system))
        .route(
            "/$export-status/{job}",
            get(export::status).delete(export::cancel),
        )
        .route("/$export-file/{job}/{file}", get(export::file))
        // The audit trail: read and search only (`audit::api`), before `{type}` routes.
        .route(
            "/AuditEvent",
            get(audit::api::search)
                .post(audit::api::refuse_change)
                .put(audit::api::refuse_change)
                .patch(audit::api::refuse_change)
                .delete(audit::api::refuse_change),
        )
        .route(
            "/AuditEvent/_search",
            get(audit::api::search).post(audit::api::search),
        )
        .route(
            "/AuditEvent/{id}",
            get(audit::api::read)
                .put(audit::api::refuse_change)
                .patch(audit::api::refuse_change)
                .delete(audit::api::refuse_change),
        )
        .route(
            "/AuditEvent/{id}/_history/{version}",
            get(audit::api::vread),
        )
        .route(
            "/{type}",
            get(search::type_get)
                .post(write::create)
                .put(conditional::update)
                .patch(conditional::patch)
                .delete(conditional::delete),
        )
        .route(
            "/{type}/_search",
            axum::routing::post(search::type_post).get(search::type_get),
        )
        .route(
            "/Patient/$match",
            axum::routing::post(crate::mpi::matching::post),
        )
        .route(
            "/Patient/$merge",
            axum::routing::post(crate::mpi::merge::merge),
        )
        .route(
            "/Patient/$unmerge",
            axum::routing::post(crate::mpi::merge::unmerge),
        )
        .route("/Patient/$duplicates", get(crate::mpi::worklist::list))
        .route(
            "/Patient/$duplicate-decision",
            axum::routing::post(crate::mpi::worklist::decide),
        )
        .route("/{type}/_history", get(history::type_level))
        .route(
            "/{type}/$export",
            get(export::type_level).post(export::type_level),
        )
        .route(
            "/{type}/$validate",
            axum::routing::post(validate::validate_type),
        )
        .route(
            "/{type}/$lookup",
            get(terminology::lookup_get).post(terminology::lookup_post),
        )
        .route(
            "/{type}/$validate-code",
            get(terminology::validate_code_get).post(terminology::validate_code_post),
        )
        .route(
            "/{type}/$subsumes",
            get(terminology::subsumes_get).post(terminology::subsumes_post),
        )
        .route(
            "/{type}/$expand",
            get(terminology::expand_get).post(terminology::expand_post),
        )
        .route(
            "/{type}/{id}/$validate",
            axum::routing::post(validate::validate_instance),
        )
        .route(
            "/{type}/{id}",
            get(instance::read)
                .put(write::update)
                .patch(patch::patch)
                .delete(write::delete),
        )
        .route("/{type}/{id}/_history", get(history::instance))
        .route(
            "/{type}/{id}/$export",
            get(export::instance_level).post(export::instance_level),
        )
        .route(
            "/{type}/{id}/$everything",
            get(everything::get).post(everything::post),
        )
        .route("/{type}/{id}/$drg", get(drg::get).post(drg::post))
        .route(
            "/Patient/{id}/$accounting-of-disclosures",
            get(disclosure::accounting),
        )
        .route("/{type}/{id}/{compartment}", get(search::compartment_get))
        .route("/{type}/{id}/_history/{version}", get(instance::vread))
        .route(
            "/.well-known/smart-configuration",
            get(auth::smart::smart_configuration),
        )
        // Releases outside the organisation are recorded once the guard let them through.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            disclosure::record::record,
        ))
        // Break-the-glass after the guard: only what the principal may do anyway.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            glass::layer,
        ))
        .route_layer(axum::middleware::from_fn(auth::guard::guard))
        .route_layer(axum::middleware::from_fn(log_request));
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/.well-known/smart-configuration",
            get(auth::smart::smart_configuration),
        )
        .route(
            auth::smart::TOKEN_PATH,
            axum::routing::post(auth::token::post),
        )
        .route(auth::smart::JWKS_PATH, get(auth::smart::jwks))
        // The base with a trailing slash (`[base]/?_type=...`, `POST [base]/`) is the base.
        .route(
            "/fhir/",
            get(search::system_get).post(bundle::base_post).route_layer(
                axum::middleware::from_fn_with_state(state.clone(), disclosure::record::record),
            ),
        )
        .nest("/fhir", fhir)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The audit record learns who the authenticated caller is.
        .layer(axum::middleware::from_fn(audit::note_principal))
        // Every request is authenticated before it is routed (the open paths pass).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state.clone())
        // A body left unread by an early answer is read, so the connection stays usable.
        .layer(axum::middleware::from_fn(drain::drain_unread))
        // A bug in one request must not take the server down: answer 500 with an OperationOutcome.
        .layer(CatchPanicLayer::custom(panic_response))
        // Every request leaves an audit record, refusals and failures included.
        .layer(axum::middleware::from_fn_with_state(
            state.audit.clone(),
            audit::record,
        ));
    Ok(app)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        fhir::IssueType::Exception,
        "internal error; the request was not completed",
    ))
}

/// Logs each FHIR request by its route template (`/fhir/{type}/{id}`), never by its URL:
/// ids and query strings can carry PHI.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        route = route.as_deref().unwrap_or("?"),
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_supported(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not supported on {}", uri.path()),
    )
}
