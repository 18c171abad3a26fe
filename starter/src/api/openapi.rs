//! The API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.
//!
//! Written by hand as data, one [`Operation`] per route, so it reads like the API it
//! describes. Every limit a client must respect comes from `tenant_domain` (the name
//! pattern and lengths) or from the handlers' own constants, never retyped. The
//! `front_door` integration test compares the document with the router in both
//! directions and checks answers against the schemas: a route added to the router without
//! an operation here (or the reverse) fails it.
//!
//! This module must never describe anything the router does not serve.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use tenant_domain::validation::{MAX_EMAIL_LEN, MAX_NAME_LEN, MAX_SLUG_LEN, NAME_PATTERN};
use tenant_domain::{EmailKind, LifecycleAction, TenantState};

use super::error::{PROBLEM_JSON, PROBLEM_TYPE_BASE};
use super::idempotency;
use super::tenants::{MAX_EVENTS_PAGE, MAX_PAGE};
use super::tokens::{MAX_EXPIRES_IN_DAYS, MAX_TOKEN_NAME_LEN};
use super::{AppState, MAX_BODY_BYTES};

/// The document's own route.
pub const PATH: &str = "/api/v1/openapi.json";

/// One route of the API.
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: String,
    /// Needs `Authorization: Bearer <token>`.
    auth: bool,
    parameters: Vec<Value>,
    request: Option<Value>,
    /// Status and response object, besides the errors every operation shares.
    responses: Vec<(u16, Value)>,
}

/// `GET /api/v1/openapi.json`: no token needed.
pub async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.config().domain))
}

/// The `(METHOD, path template)` of every documented route, e.g. `("GET", "/healthz/live")`.
pub fn routes() -> Vec<(&'static str, &'static str)> {
    operations().iter().map(|o| (o.method, o.path)).collect()
}

/// The whole document, for a platform serving tenants under `*.<domain>`.
pub fn document(domain: &str) -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        let method = op.method.to_ascii_lowercase();
        item[method] = render(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tenant Provisioner API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Provisions tenants of a multi-tenant platform through one saga per tenant. \
                 A tenant is served at `<slug>-<org>.{domain}` once active.\n\n\
                 Every error is `{PROBLEM_JSON}` (RFC 9457) with a stable `type` under \
                 `{PROBLEM_TYPE_BASE}`; validation errors list each refused field in `errors`. \
                 The validation rule is published as data at `GET /api/v1/rules`. Request \
                 bodies larger than {MAX_BODY_BYTES} bytes are refused with 413."
            ),
        },
        "tags": [
            { "name": "tenants", "description": "Tenants of an organisation and their audit feed" },
            { "name": "tokens", "description": "The caller's own API tokens" },
            { "name": "meta", "description": "Rules, this document, liveness and readiness" },
        ],
        "security": [ { "bearer": [] } ],
        "paths": paths,
        "components": components(),
    })
}

fn render(op: Operation) -> Value {
    let mut responses = Map::new();
    for (status, response) in op.responses {
        responses.insert(status.to_string(), response);
    }
    if op.auth {
        responses.insert("401".into(), problem_ref("Unauthorized"));
    }
    responses.insert("500".into(), problem_ref("Internal"));
    let mut rendered = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": op.description,
        "responses": responses,
    });
    if !op.auth {
        rendered["security"] = json!([]);
    }
    if !op.parameters.is_empty() {
        rendered["parameters"] = Value::Array(op.parameters);
    }
    if let Some(schema) = op.request {
        rendered["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema } },
        });
    }
    rendered
}

fn operations() -> Vec<Operation> {
    const TENANTS: &str = "/api/v1/organizations/{org_id}/tenants";
    vec![
        Operation {
            method: "POST",
            path: TENANTS,
            id: "tenants_create",
            tag: "tenants",
            summary: "Request a new tenant",
            description: "Checks the caller's role (owner or admin of the organisation, or a \
                platform operator), validates the request with the one rule, reserves the \
                tenant's slot (its key and host name label) and starts its saga. 202 for a new \
                tenant; 200 with the existing tenant for a request identical to the one that \
                holds the slot. With an `Idempotency-Key`, a repeat of the same request by the \
                same caller within 24 hours returns the first answer (with \
                `Idempotent-Replayed: true`) without acting again."
                .into(),
            auth: true,
            parameters: vec![org_param(), idempotency_key_param()],
            request: Some(schema_ref("CreateTenantRequest")),
            responses: vec![
                (
                    202,
                    json_response("The tenant was accepted; its saga runs", "TenantResource")
                        .with_location(),
                ),
                (
                    200,
                    json_response(
                        "An identical request was accepted before: that tenant",
                        "TenantResource",
                    )
                    .with_location(),
                ),
                (400, problem_ref("Validation")),
                (403, problem_ref("Forbidden")),
                (404, problem_ref("NotFound")),
                (409, problem_ref("Conflict")),
                (413, problem_ref("PayloadTooLarge")),
                (415, problem_ref("UnsupportedMediaType")),
                (422, problem_ref("IdempotencyKeyReused")),
                (503, problem_ref("Unavailable")),
            ],
        },
        Operation {
            method: "GET",
            path: TENANTS,
            id: "tenants_list",
            tag: "tenants",
            summary: "List the organisation's tenants",
            description: "Any role in the organisation may read. Ordered by slug; pass \
                `next_after` of one page as `after` to get the next."
                .into(),
            auth: true,
            parameters: vec![
                org_param(),
                query_param(
                    "state",
                    "Only tenants in this state",
                    json!({ "type": "string", "enum": states() }),
                ),
                query_param(
                    "limit",
                    "Most tenants on one page",
                    json!({
                        "type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50
                    }),
                ),
                query_param(
                    "after",
                    "The last slug of the previous page",
                    slug_schema(MAX_SLUG_LEN),
                ),
            ],
            request: None,
            responses: vec![
                (200, json_response("A page of tenants", "TenantPage")),
                (400, problem_ref("Validation")),
                (404, problem_ref("NotFound")),
            ],
        },
        Operation {
            method: "GET",
            path: "/api/v1/organizations/{org_id}/tenants/{slug}",
            id: "tenants_show",
            tag: "tenants",
            summary: "Show one tenant",
            description: "The stored tenant with its resource ledger, the delivery status of \
                its three welcome emails (`emails`, from the control plane's records: \
                `pending` until tried, then `sent`, `refused` with the server's answer, or \
                `failed` with the error when the server could not be reached, and the number \
                of tries), its plan's sizing (`sizing`) and, unless `live=false`, \
                the workflow's own view (state, phase, next stable state, last error, \
                resources)."
                .into(),
            auth: true,
            parameters: vec![
                org_param(),
                slug_param(),
                query_param(
                    "live",
                    "Ask the workflow for its live view",
                    json!({
                        "type": "boolean", "default": true
                    }),
                ),
            ],
            request: None,
            responses: vec![
                (200, json_response("The tenant", "TenantDetail")),
                (400, problem_ref("Validation")),
                (404, problem_ref("NotFound")),
            ],
        },
        Operation {
            method: "GET",
            path: "/api/v1/organizations/{org_id}/tenants/{slug}/events",
            id: "tenants_events",
            tag: "tenants",
            summary: "The tenant's audit feed, as a page or live",
            description: "Every incarnation's events, oldest first; `id` orders the feed, so \
                pass the last id seen as `after` to resume. With `Accept: text/event-stream` \
                the answer is a Server-Sent Events stream that stays open: every event after \
                `Last-Event-ID` (else `after`), then each new one as it commits, each with \
                `id: <event id>`, `event: <kind>` and the event as JSON `data`; no event is \
                ever skipped."
                .into(),
            auth: true,
            parameters: vec![
                org_param(),
                slug_param(),
                query_param(
                    "after",
                    "Only events after this id",
                    json!({
                        "type": "integer", "minimum": 0, "default": 0
                    }),
                ),
                json!({
                    "name": "Last-Event-ID", "in": "header", "required": false,
                    "description": "With a live stream: resume after this event id (sent by \
                        a reconnecting EventSource); takes precedence over `after`",
                    "schema": { "type": "integer", "minimum": 0 },
                }),
                query_param(
                    "limit",
                    "Most events returned (a JSON page only)",
                    json!({
                        "type": "integer", "minimum": 1, "maximum": MAX_EVENTS_PAGE, "default": 100
                    }),
                ),
            ],
            request: None,
            responses: vec![
                (
                    200,
                    json!({
                        "description": "Events, oldest first",
                        "content": {
                            "application/json": { "schema": {
                                "type": "array", "items": schema_ref("Event")
                            } },
                            "text/event-stream": { "schema": {
                                "type": "string",
                                "description": "SSE; each `data` is one Event as JSON",
                            } },
                        },
                    }),
                ),
                (400, problem_ref("Validation")),
                (404, problem_ref("NotFound")),
            ],
        },
        lifecycle(
            LifecycleAction::Retry,
            "/api/v1/organizations/{org_id}/tenants/{slug}/retry",
        ),
        lifecycle(
            LifecycleAction::Decommission,
            "/api/v1/organizations/{org_id}/tenants/{slug}/decommission",
        ),
        lifecycle(
            LifecycleAction::Suspend,
            "/api/v1/organizations/{org_id}/tenants/{slug}/suspend",
        ),
        lifecycle(
            LifecycleAction::Resume,
            "/api/v1/organizations/{org_id}/tenants/{slug}/resume",
        ),
        lifecycle(
            LifecycleAction::ReissueInvitation,
            "/api/v1/organizations/{org_id}/tenants/{slug}/invitation/reissue",
        ),
        lifecycle(
            LifecycleAction::ResendEmail,
            "/api/v1/organizations/{org_id}/tenants/{slug}/emails/{kind}/resend",
        ),
        Operation {
            method: "POST",
            path: "/api/v1/tokens",
            id: "tokens_create",
            tag: "tokens",
            summary: "Issue an API token for the caller",
            description: "The token is in this answer once and never again: only its \
                SHA-256 is kept. Without `expires_in_days` it works until revoked. A token \
                never outlives the token that creates it: when the caller's own token \
                expires, the new token expires with it by default, and asking for more days \
                than the caller's token has left is a 400 on `expires_in_days` (code \
                `exceeds_caller_token`). Nor does it survive it: revoking the caller's token \
                revokes the new token too."
                .into(),
            auth: true,
            parameters: vec![],
            request: Some(schema_ref("CreateTokenRequest")),
            responses: vec![
                (201, json_response("The new token", "TokenCreated")),
                (400, problem_ref("Validation")),
                (413, problem_ref("PayloadTooLarge")),
                (415, problem_ref("UnsupportedMediaType")),
            ],
        },
        Operation {
            method: "GET",
            path: "/api/v1/tokens",
            id: "tokens_list",
            tag: "tokens",
            summary: "List the caller's tokens",
            description: "Live, expired and revoked tokens, oldest first; never a token's value."
                .into(),
            auth: true,
            parameters: vec![],
            request: None,
            responses: vec![(200, json_response("The caller's tokens", "TokenList"))],
        },
        Operation {
            method: "DELETE",
            path: "/api/v1/tokens/{id}",
            id: "tokens_revoke",
            tag: "tokens",
            summary: "Revoke a token and every token it created",
            description: "The caller may revoke its own tokens, a platform operator any \
                token; another principal's token is not found. Every token descending from \
                it (created with it through `POST /api/v1/tokens`, or with one of those, down \
                the chain) is revoked with it, all at once; `revoked_descendants` counts those \
                this call revoked, and a descendant revoked before keeps its `revoked_at`. \
                Revoking a revoked token answers the same token with `already_revoked: true`. \
                A revoked token is refused with 401 from then on. An id that is not a UUID is \
                a 400 on `token_id`."
                .into(),
            auth: true,
            parameters: vec![json!({
                "name": "id", "in": "path", "required": true,
                "schema": { "type": "string", "format": "uuid" },
            })],
            request: None,
            responses: vec![
                (200, json_response("The revoked token", "TokenRevoked")),
                (400, problem_ref("Validation")),
                (404, problem_ref("NotFound")),
            ],
        },
        Operation {
            method: "GET",
            path: "/api/v1/rules",
            id: "rules_show",
            tag: "meta",
            summary: "The validation rule of a tenant request",
            description: "Pattern, lengths, plans and the host name template, for forms that \
                must check exactly what the API checks. No token needed."
                .into(),
            auth: false,
            parameters: vec![],
            request: None,
            responses: vec![(200, json_response("The rule", "Rules"))],
        },
        Operation {
            method: "GET",
            path: PATH,
            id: "openapi_json",
            tag: "meta",
            summary: "This document",
            description: "No token needed.".into(),
            auth: false,
            parameters: vec![],
            request: None,
            responses: vec![(
                200,
                json!({
                    "description": "The OpenAPI 3.1 document",
                    "content": { "application/json": { "schema": { "type": "object" } } },
                }),
            )],
        },
        Operation {
            method: "GET",
            path: "/healthz/live",
            id: "health_live",
            tag: "meta",
            summary: "Liveness",
            description: "200 while the process serves requests. No token needed.".into(),
            auth: false,
            parameters: vec![],
            request: None,
            responses: vec![(200, json_response("Alive", "Liveness"))],
        },
        Operation {
            method: "GET",
            path: "/healthz/ready",
            id: "health_ready",
            tag: "meta",
            summary: "Readiness",
            description: "200 when PostgreSQL and Temporal both answer; 503 naming the failed \
                checks otherwise. No token needed."
                .into(),
            auth: false,
            parameters: vec![],
            request: None,
            responses: vec![
                (200, json_response("Ready", "Readiness")),
                (
                    503,
                    json!({
                        "description": "A dependency does not answer",
                        "content": { PROBLEM_JSON: { "schema": schema_ref("Readiness") } },
                    }),
                ),
            ],
        },
    ]
}

/// `POST …/tenants/{slug}/<action>`: one lifecycle or email action, sent to the tenant's
/// workflow.
fn lifecycle(action: LifecycleAction, path: &'static str) -> Operation {
    let (id, summary) = match action {
        LifecycleAction::Retry => ("tenants_retry", "Provision a failed tenant again"),
        LifecycleAction::Decommission => (
            "tenants_decommission",
            "Release everything the tenant holds and free its slot",
        ),
        LifecycleAction::Suspend => ("tenants_suspend", "Stop serving the tenant"),
        LifecycleAction::Resume => ("tenants_resume", "Serve a suspended tenant again"),
        LifecycleAction::ReissueInvitation => (
            "tenants_reissue_invitation",
            "Send the first admin a new invitation",
        ),
        LifecycleAction::ResendEmail => ("tenants_resend_email", "Send one welcome email again"),
    };
    let from: Vec<&str> = action.allowed_from().iter().map(|s| s.as_str()).collect();
    let outcome = if action.changes_state() {
        "the audit feed shows its progress to the next stable state"
    } else {
        "the tenant's state does not change; the audit feed ends the action with \
         `operator_email_sent` or `operator_email_failed` (with the actor), and the email's \
         delivery status shows in the tenant's `emails`"
    };
    let mut parameters = vec![org_param(), slug_param()];
    let responses = vec![
        (
            202,
            json_response("The workflow accepted the action", "ActionAnswer"),
        ),
        (400, problem_ref("Validation")),
        (403, problem_ref("Forbidden")),
        (404, problem_ref("NotFound")),
        (409, problem_ref("Conflict")),
        (503, problem_ref("Unavailable")),
    ];
    if action == LifecycleAction::ResendEmail {
        parameters.push(json!({
            "name": "kind", "in": "path", "required": true,
            "description": "Which welcome email to send again; another value is refused with \
                400 (field `kind`)",
            "schema": { "type": "string", "enum": email_kinds() },
        }));
    }
    Operation {
        method: "POST",
        path,
        id,
        tag: "tenants",
        summary,
        description: format!(
            "Owner, admin or operator. Sent to the tenant's workflow as an update, acting as \
             the caller; the answer says whether the workflow accepted it, and {outcome}. \
             Accepted from: {}. 409 from any other state (the detail says why), while another \
             action is in progress, or for a decommissioned tenant or one whose workflow no \
             longer runs. 503 when the workflow does not answer in time: check the tenant \
             before repeating. No request body.",
            from.join(", ")
        ),
        auth: true,
        parameters,
        request: None,
        responses,
    }
}

fn email_kinds() -> Vec<&'static str> {
    EmailKind::ALL.map(EmailKind::as_str).to_vec()
}

/// Adds the `Location` header to a response object.
trait WithLocation {
    fn with_location(self) -> Value;
}

impl WithLocation for Value {
    fn with_location(mut self) -> Value {
        self["headers"] = json!({
            "Location": {
                "description": "The tenant's URL in this API",
                "schema": { "type": "string" },
            }
        });
        self
    }
}

fn states() -> Vec<&'static str> {
    use TenantState::*;
    [
        Provisioning,
        Active,
        Suspended,
        Compensating,
        Failed,
        Decommissioning,
        Decommissioned,
    ]
    .map(TenantState::as_str)
    .to_vec()
}

/// A slug, organisation slug or tenant name: the one pattern and a length limit.
fn slug_schema(max_length: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": NAME_PATTERN,
        "examples": ["production-eu"],
    })
}

fn email_schema() -> Value {
    json!({
        "type": "string",
        "format": "email",
        "minLength": 1,
        "maxLength": MAX_EMAIL_LEN,
        "description": "A plain ASCII address like admin@example.com: no display name, \
            comments or quoted parts, and a dotted domain",
        "examples": ["admin@example.com"],
    })
}

fn org_param() -> Value {
    json!({
        "name": "org_id", "in": "path", "required": true,
        "description": "The organisation's slug; one that breaks the naming rule is \
            refused with 400 (field `org_id`)",
        "schema": slug_schema(MAX_SLUG_LEN),
    })
}

fn slug_param() -> Value {
    json!({
        "name": "slug", "in": "path", "required": true,
        "description": "The tenant's slug; one that breaks the naming rule is refused \
            with 400 (field `slug`)",
        "schema": slug_schema(MAX_SLUG_LEN),
    })
}

fn idempotency_key_param() -> Value {
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "Any unique string (e.g. a UUID). The same caller sending the same \
            request with the same key within 24 hours gets the first answer back; the same \
            key with another request is refused with 422.",
        "schema": {
            "type": "string", "minLength": 1, "maxLength": idempotency::MAX_KEY_LEN,
            "pattern": "^[\\x21-\\x7e]+$",
        },
    })
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name, "in": "query", "required": false,
        "description": description, "schema": schema,
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": schema_ref(schema) } },
    })
}

fn problem_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

/// A problem response whose `type` is `<base><slug>`.
fn problem_response(description: &str, slugs: &[&str]) -> Value {
    let types: Vec<String> = slugs
        .iter()
        .map(|s| format!("{PROBLEM_TYPE_BASE}{s}"))
        .collect();
    json!({
        "description": description,
        "content": { PROBLEM_JSON: { "schema": {
            "allOf": [
                schema_ref("Problem"),
                { "type": "object", "properties": { "type": { "enum": types } } },
            ]
        } } },
    })
}

fn components() -> Value {
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let nullable_timestamp = json!({ "type": ["string", "null"], "format": "date-time" });
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description":
                    "An API token (`tp_…`) from `tenants bootstrap` or `POST /api/v1/tokens`",
            }
        },
        "responses": {
            "Validation": problem_response(
                "The request breaks the validation rule or is malformed; nothing was written. \
                 `errors` names each refused field with a stable code (required, pattern, \
                 too_long, unknown_plan, invalid_email, unknown_field, invalid_type, \
                 malformed_json, duplicate_key, ...). A path or query parameter that is \
                 malformed is named the same way: a path segment or query value that is \
                 not UTF-8 once percent-decoded is `invalid_utf8`, a query parameter given \
                 twice is `duplicate`. A JSON object that repeats a key is refused \
                 (`duplicate_key`), never read with one of its values",
                &["validation"],
            ),
            "Unauthorized": problem_response(
                "No token, or a token that is unknown, expired or revoked",
                &["unauthorized"],
            ),
            "Forbidden": problem_response(
                "The caller's role in the organisation does not allow the action",
                &["forbidden"],
            ),
            "NotFound": problem_response(
                "No such resource, or an organisation the caller has no role in (the two \
                 answers are identical)",
                &["not-found"],
            ),
            "Conflict": problem_response(
                "The tenant's slot (key or host name label) is held by another request, the \
                 organisation reached its plan's tenant quota, a lifecycle action is not \
                 possible in the tenant's state, or a request with the same Idempotency-Key \
                 is still being handled",
                &["conflict", "quota-exceeded", "idempotency-key-in-use"],
            ),
            "IdempotencyKeyReused": problem_response(
                "The Idempotency-Key was sent with a different request in the last 24 hours",
                &["idempotency-key-reused"],
            ),
            "PayloadTooLarge":
                problem_response("The request body is too large", &["payload-too-large"]),
            "UnsupportedMediaType": problem_response(
                "The body is not sent as application/json",
                &["unsupported-media-type"],
            ),
            "Unavailable": problem_response(
                "The workflow engine did not answer; the request is safe to repeat",
                &["unavailable"],
            ),
            "Internal": problem_response(
                "An unexpected failure; the body says nothing more, the server log does",
                &["internal"],
            ),
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": { "type": "string", "format": "uri" },
                    "title": { "type": "string" },
                    "status": { "type": "integer" },
                    "detail": { "type": "string" },
                    "errors": { "type": "array", "items": schema_ref("FieldError") },
                },
            },
            "FieldError": {
                "type": "object",
                "required": ["field", "code", "message"],
                "properties": {
                    "field": {
                        "type": "string",
                        "description": "The body field, or `org`, `body`, a query parameter, \
                            `Idempotency-Key`",
                    },
                    "code": { "type": "string", "description": "Stable and machine-readable" },
                    "message": {
                        "type": "string", "description": "What is wrong and how to fix it",
                    },
                },
            },
            "CreateTenantRequest": {
                "type": "object",
                "additionalProperties": false,
                "required": ["slug", "plan", "first_admin_email"],
                "properties": {
                    "slug": slug_schema(MAX_SLUG_LEN),
                    "plan": {
                        "type": "string", "minLength": 1,
                        "description": "A plan name from `GET /api/v1/rules`",
                        "examples": ["growth"],
                    },
                    "first_admin_email": email_schema(),
                    "name": described(
                        slug_schema(MAX_NAME_LEN),
                        "The tenant's name; defaults to the slug",
                    ),
                },
            },
            "TenantResource": {
                "type": "object",
                "required": [
                    "id", "org", "slug", "name", "plan", "first_admin_email", "host", "url",
                    "state", "phase", "incarnation", "workflow_id", "run_id", "last_error",
                    "created_at", "updated_at", "links",
                ],
                "properties": {
                    "id": {
                        "type": "string", "format": "uuid", "description": "UUIDv5 of (org, slug)",
                    },
                    "org": slug_schema(MAX_SLUG_LEN),
                    "slug": slug_schema(MAX_SLUG_LEN),
                    "name": slug_schema(MAX_NAME_LEN),
                    "plan": { "type": "string" },
                    "first_admin_email": email_schema(),
                    "host": { "type": "string", "description": "`<slug>-<org>.<domain>`" },
                    "url": { "type": "string", "format": "uri" },
                    "state": { "type": "string", "enum": states() },
                    "phase": { "type": ["string", "null"] },
                    "incarnation": { "type": "integer", "minimum": 1 },
                    "workflow_id": { "type": "string" },
                    "run_id": { "type": ["string", "null"] },
                    "last_error": { "type": ["object", "null"] },
                    "created_at": timestamp,
                    "updated_at": timestamp,
                    "links": {
                        "type": "object",
                        "required": ["self", "events", "temporal_ui"],
                        "properties": {
                            "self": { "type": "string" },
                            "events": { "type": "string" },
                            "temporal_ui": { "type": "string", "format": "uri" },
                        },
                    },
                },
            },
            "TenantDetail": {
                "allOf": [
                    schema_ref("TenantResource"),
                    {
                        "type": "object",
                        "properties": {
                            "resources": { "type": "array", "items": schema_ref("Resource") },
                            "emails": {
                                "type": "array",
                                "description": "The three welcome emails of the current \
                                    incarnation, in sending order",
                                "items": schema_ref("EmailDelivery"),
                            },
                            "live": {
                                "type": "object",
                                "description": "The workflow's own view; absent when Temporal \
                                    does not answer or `live=false`",
                            },
                            "sizing": schema_ref("TenantSizing"),
                        },
                    },
                ],
            },
            "TenantSizing": {
                "type": "object",
                "description": "What the tenant's plan gives it, as the plan reads now; a \
                    changed plan applies to the tenant's service when it is next deployed or \
                    a worker starts",
                "required": [
                    "plan", "db_connection_limit", "workload_db_pool",
                    "workload_max_concurrent_requests",
                ],
                "properties": {
                    "plan": { "type": "string" },
                    "db_connection_limit": {
                        "type": "integer", "minimum": 3,
                        "description": "Connections the tenant's database role may open",
                    },
                    "workload_db_pool": {
                        "type": "integer", "minimum": 1,
                        "description": "Connections the tenant's service keeps in its pool \
                            at most; at least two below `db_connection_limit`",
                    },
                    "workload_max_concurrent_requests": {
                        "type": "integer", "minimum": 1,
                        "description": "Requests the tenant's service serves at once; it \
                            answers 503 to more",
                    },
                },
            },
            "Resource": {
                "type": "object",
                "required": ["kind", "name", "incarnation", "allocated_at", "released_at"],
                "properties": {
                    "kind": { "type": "string" },
                    "name": { "type": "string" },
                    "incarnation": { "type": "integer" },
                    "allocated_at": timestamp,
                    "released_at": nullable_timestamp,
                },
            },
            "EmailDelivery": {
                "type": "object",
                "required": [
                    "kind", "status", "error", "attempts", "message_id", "updated_at",
                ],
                "properties": {
                    "kind": { "type": "string", "enum": email_kinds() },
                    "status": {
                        "type": "string",
                        "enum": ["pending", "sent", "refused", "failed"],
                        "description": "`pending` until the email is tried; `failed` when \
                            the SMTP server could not be reached",
                    },
                    "error": {
                        "type": ["string", "null"],
                        "description": "The SMTP server's answer when it refused, or the \
                            transport's error when it failed",
                    },
                    "attempts": {
                        "type": "integer", "minimum": 0,
                        "description": "Tries so far: the saga's, +1 per resend (and per \
                            invitation re-issue, for `welcome`)",
                    },
                    "message_id": {
                        "type": ["string", "null"],
                        "description": "The same for every send of this email",
                    },
                    "updated_at": nullable_timestamp,
                },
            },
            "TenantPage": {
                "type": "object",
                "required": ["items", "next_after"],
                "properties": {
                    "items": { "type": "array", "items": schema_ref("TenantResource") },
                    "next_after": { "type": ["string", "null"] },
                },
            },
            "Event": {
                "type": "object",
                "required": ["id", "incarnation", "run_id", "kind", "actor", "message", "at"],
                "properties": {
                    "id": { "type": "integer", "description": "Orders the feed" },
                    "incarnation": { "type": "integer" },
                    "run_id": { "type": "string" },
                    "kind": { "type": "string" },
                    "phase": { "type": ["string", "null"] },
                    "attempt": { "type": ["integer", "null"] },
                    "state": { "type": ["string", "null"] },
                    "actor": { "type": "string" },
                    "message": { "type": "string" },
                    "detail": {},
                    "at": timestamp,
                },
            },
            "ActionAnswer": {
                "type": "object",
                "required": ["action", "accepted", "answer", "tenant"],
                "properties": {
                    "action": {
                        "type": "string",
                        "enum": [
                            LifecycleAction::Retry.as_str(),
                            LifecycleAction::Decommission.as_str(),
                            LifecycleAction::Suspend.as_str(),
                            LifecycleAction::Resume.as_str(),
                            LifecycleAction::ReissueInvitation.as_str(),
                            LifecycleAction::ResendEmail.as_str(),
                        ],
                    },
                    "accepted": { "const": true },
                    "email": {
                        "type": "string",
                        "enum": email_kinds(),
                        "description": "For `resend_email`: which email",
                    },
                    "answer": { "type": "string", "description": "The workflow's own answer" },
                    "tenant": schema_ref("TenantResource"),
                },
            },
            "CreateTokenRequest": {
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "properties": {
                    "name": {
                        "type": "string", "minLength": 1, "maxLength": MAX_TOKEN_NAME_LEN,
                        "examples": ["ci-deploy"],
                    },
                    "expires_in_days": {
                        "type": "integer", "minimum": 1, "maximum": MAX_EXPIRES_IN_DAYS,
                        "description": "Absent: until revoked, or until the caller's own \
                            token expires if it does; at most the whole days the caller's \
                            token has left",
                    },
                },
            },
            "TokenCreated": {
                "type": "object",
                "required": ["id", "name", "token", "expires_at"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "name": { "type": "string" },
                    "token": {
                        "type": "string", "description": "Shown this once; starts with tp_",
                    },
                    "expires_at": nullable_timestamp,
                },
            },
            "Token": {
                "type": "object",
                "required": [
                    "id", "name", "state", "created_at", "expires_at", "revoked_at",
                    "created_by_token",
                ],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "name": { "type": "string" },
                    "state": { "type": "string", "enum": ["active", "expired", "revoked"] },
                    "created_at": timestamp,
                    "expires_at": nullable_timestamp,
                    "revoked_at": nullable_timestamp,
                    "created_by_token": {
                        "type": ["string", "null"], "format": "uuid",
                        "description": "The token this one was created with; revoking that \
                            token revokes this one. Null for tokens from `tenants bootstrap`",
                    },
                },
            },
            "TokenRevoked": {
                "allOf": [
                    schema_ref("Token"),
                    {
                        "type": "object",
                        "required": ["already_revoked", "revoked_descendants"],
                        "properties": {
                            "already_revoked": {
                                "type": "boolean",
                                "description": "The token was revoked before this call, \
                                    which kept its revoked_at",
                            },
                            "revoked_descendants": {
                                "type": "integer", "minimum": 0,
                                "description": "Tokens descending from this one that this \
                                    call revoked",
                            },
                        },
                    },
                ],
            },
            "TokenList": {
                "type": "object",
                "required": ["items"],
                "properties": { "items": { "type": "array", "items": schema_ref("Token") } },
            },
            "Rules": rules_schema(),
            "Liveness": {
                "type": "object",
                "required": ["status"],
                "properties": { "status": { "const": "ok" } },
            },
            "Readiness": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": { "type": "string" },
                    "checks": {
                        "type": "object",
                        "properties": {
                            "database": { "enum": ["ok", "failed"] },
                            "workflow_engine": { "enum": ["ok", "failed"] },
                        },
                    },
                    "type": { "type": "string" },
                    "title": { "type": "string" },
                    "detail": { "type": "string" },
                },
            },
        },
    })
}

fn described(mut schema: Value, description: &str) -> Value {
    schema["description"] = Value::from(description);
    schema
}

fn rules_schema() -> Value {
    let field = json!({
        "type": "object",
        "required": ["required"],
        "properties": {
            "required": { "type": "boolean" },
            "max_length": { "type": "integer" },
            "pattern": { "type": "string" },
            "format": { "type": "string" },
            "default": { "type": "string" },
        },
    });
    json!({
        "type": "object",
        "required": ["name_pattern", "fields", "plans", "host"],
        "properties": {
            "name_pattern": { "const": NAME_PATTERN },
            "fields": {
                "type": "object",
                "required": ["org", "slug", "name", "first_admin_email", "plan"],
                "properties": {
                    "org": field, "slug": field, "name": field,
                    "first_admin_email": field, "plan": field,
                },
            },
            "plans": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "name", "display_name", "max_tenants_per_org", "db_connection_limit",
                        "workload_db_pool", "workload_max_concurrent_requests",
                    ],
                    "properties": {
                        "name": { "type": "string" },
                        "display_name": { "type": "string" },
                        "max_tenants_per_org": { "type": "integer" },
                        "db_connection_limit": { "type": "integer" },
                        "workload_db_pool": { "type": "integer" },
                        "workload_max_concurrent_requests": { "type": "integer" },
                    },
                },
            },
            "host": {
                "type": "object",
                "required": ["template", "domain", "max_label_length", "max_host_length"],
                "properties": {
                    "template": { "const": super::rules::HOST_TEMPLATE },
                    "domain": { "type": "string" },
                    "max_label_length": { "type": "integer" },
                    "max_host_length": { "type": "integer" },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_unique_and_every_reference_resolves() {
        let doc = document("tenants.localhost");
        let mut seen = std::collections::HashSet::new();
        for (method, path) in routes() {
            assert!(
                seen.insert((method, path)),
                "{method} {path} documented twice"
            );
            let op = &doc["paths"][path][method.to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path}");
        }
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.trim_start_matches('#');
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} does not resolve"
            );
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(item, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
            _ => {}
        }
    }

    #[test]
    fn names_carry_the_domain_rule() {
        let doc = document("tenants.localhost");
        let body = &doc["components"]["schemas"]["CreateTenantRequest"]["properties"];
        assert_eq!(body["slug"]["pattern"], NAME_PATTERN);
        assert_eq!(body["name"]["maxLength"], MAX_NAME_LEN);
        assert_eq!(body["first_admin_email"]["maxLength"], MAX_EMAIL_LEN);
    }
}
