//! The extractors handlers read a request's path, query and JSON body with.
//!
//! Each refuses with a problem document in our own words that names the part at fault
//! (the path parameter, the query parameter, the body field); the web framework's rejection
//! text never reaches a client. A body is read here but parsed only when the handler asks,
//! after it has checked the caller's access, so an outsider learns nothing from it.
//!
//! Nothing here may log a request body or a query string (they can carry email addresses).

use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use percent_encoding::percent_decode_str;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess};

use tenant_domain::FieldError;
use tenant_domain::validation::check_slug;

use super::ApiError;

/// A path extractor whose rejections name the path parameter, e.g. a segment that is not
/// valid UTF-8 once percent-decoded: 400 with the parameter (`org_id`, `slug`, `kind`) as
/// the field. The organisation (`org_id`) and tenant (`slug`) segments are checked with the
/// domain's naming rule, as a request body's are: a name that breaks it cannot exist, so the
/// 400 says nothing about any organisation, and handlers only ever see well-formed names.
/// Handlers take the caller before the path, so a missing token is still a 401 first.
pub struct ApiPath<T>(pub T);

/// Path parameters that name an organisation or a tenant, checked with the naming rule.
const NAMED_BY_THE_RULE: [&str; 2] = ["org_id", "slug"];

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => value,
            Err(rejection) => return Err(path_problem(rejection)),
        };
        // Read again by name; it decoded once already, so this cannot fail differently.
        let named = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(path_problem)?;
        let refused: Vec<FieldError> = named
            .0
            .iter()
            .filter(|(key, _)| NAMED_BY_THE_RULE.contains(&key.as_str()))
            .filter_map(|(key, value)| check_slug(key, value).err())
            .collect();
        if !refused.is_empty() {
            return Err(ApiError::invalid_fields(refused));
        }
        Ok(Self(value))
    }
}

/// Longest client-given name (an unknown field or query parameter) a problem repeats.
/// No field or parameter of ours is nearly this long.
pub const MAX_ECHOED_NAME: usize = 64;

/// `value` as a problem detail may repeat it: at most `max_chars` characters (then `…`), and
/// control characters written as escapes, so a client's oversized or hostile input is never
/// sent back whole.
pub fn echo(value: &str, max_chars: usize) -> String {
    let mut shown = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == max_chars {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn path_problem(rejection: PathRejection) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(failed) = &rejection else {
        // The route has no parameters for the extractor: a bug in the router, not the request.
        return ApiError::Internal(anyhow::anyhow!(
            "path parameters unavailable: {}",
            rejection.body_text()
        ));
    };
    match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::field(
            key,
            "invalid_utf8",
            format!("{key} in the path is not valid UTF-8 once percent-decoded"),
        ),
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
            ApiError::field(key, "invalid", format!("{key} in the path is malformed"))
        }
        ErrorKind::WrongNumberOfParameters { .. } | ErrorKind::UnsupportedType { .. } => {
            ApiError::Internal(anyhow::anyhow!(
                "path extractor does not fit its route: {}",
                failed.body_text()
            ))
        }
        _ => ApiError::field("path", "invalid", "the path is malformed"),
    }
}

/// A query extractor. Each parameter may appear once and must be valid UTF-8 once
/// percent-decoded; the handler's type reads the parameters as strings (parameters it does
/// not declare are ignored) and checks their values itself, in its own words.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let params = query_params(parts.uri.query().unwrap_or(""))?;
        let object = serde_json::Value::Object(
            params
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        );
        serde_path_to_error::deserialize(object)
            .map(Self)
            .map_err(|err| {
                // A misspelt parameter must not be ignored: `?stat=active` would list
                // every tenant as if it were filtered.
                let message = err.inner().to_string();
                if let Some(rest) = message.strip_prefix("unknown field `")
                    && let Some((name, expected)) = rest.split_once('`')
                {
                    let known = expected.trim_start_matches(", expected ");
                    let known = known.strip_prefix("one of ").unwrap_or(known);
                    let name = echo(name, MAX_ECHOED_NAME);
                    return ApiError::field(
                        &name,
                        "unknown_parameter",
                        format!("unknown query parameter {name}; this endpoint takes {known}"),
                    );
                }
                let field = err.path().to_string();
                let field = if field == "." { "query".into() } else { field };
                ApiError::field(
                    &field,
                    "invalid",
                    format!("query parameter {field} is invalid"),
                )
            })
    }
}

/// The decoded `name=value` pairs of a query string (`application/x-www-form-urlencoded`:
/// `+` is a space), refusing a repeated name and bytes that are not UTF-8.
fn query_params(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |raw: &str| {
        let spaced = raw.replace('+', " ");
        percent_decode_str(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
    };
    let mut seen = HashSet::new();
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(raw_name).map_err(|_| {
            ApiError::field(
                "query",
                "invalid_utf8",
                "a query parameter name is not valid UTF-8 once percent-decoded",
            )
        })?;
        let shown = echo(&name, MAX_ECHOED_NAME);
        let value = decode(raw_value).map_err(|_| {
            ApiError::field(
                &shown,
                "invalid_utf8",
                format!("query parameter {shown} is not valid UTF-8 once percent-decoded"),
            )
        })?;
        if name.is_empty() {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(ApiError::field(
                &shown,
                "duplicate",
                format!("query parameter {shown} is given more than once; give it once"),
            ));
        }
        params.push((name, value));
    }
    Ok(params)
}

/// A JSON request body, read (content type and size checked) but not yet parsed, so a
/// handler can check the caller's access before saying anything about the body.
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with Content-Type: application/json".into(),
            ));
        }
        Ok(Self(Bytes::from_request(request, state).await?))
    }
}

impl JsonBody {
    /// The body as received.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Parses the body, naming the offending field when the JSON is well-formed but wrong.
    /// A key given twice in one object is refused: JSON parsers disagree on which value
    /// wins, so the request is ambiguous.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::field(
                "body",
                "required",
                "the request body is empty; send a JSON object",
            ));
        }
        let first_duplicate: FirstDuplicateKey =
            serde_json::from_slice(&self.0).map_err(|e| body_error(".".into(), e))?;
        if let Some(key) = first_duplicate.0 {
            return Err(duplicate_key(&key));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&self.0).map_err(|e| body_error(".".into(), e))?;
        // serde would also read a struct from an array, positionally; only objects are meant.
        // Only the top level is checked: a struct nested in a body would still take an array.
        // No body nests one today; checking every object position against the type would.
        if !value.is_object() {
            return Err(ApiError::field(
                "body",
                "invalid_type",
                "the request body must be a JSON object",
            ));
        }
        serde_path_to_error::deserialize(value)
            .map_err(|e| body_error(e.path().to_string(), e.into_inner()))
    }

    /// The refusal [`JsonBody::parse`] gives a body with a key given twice, if it has one;
    /// nothing for any other body, whatever its faults.
    pub fn duplicate_key_problem(&self) -> Option<ApiError> {
        let first: FirstDuplicateKey = serde_json::from_slice(&self.0).ok()?;
        first.0.map(|key| duplicate_key(&key))
    }
}

fn duplicate_key(key: &str) -> ApiError {
    let key = echo(key, MAX_ECHOED_NAME);
    ApiError::field(&key, "duplicate_key", format!("duplicate key `{key}`"))
}

/// The first key that appears twice within one object, anywhere in a JSON document, as a
/// path (`slug`, `a.b`, `a[2].b`). Reading it walks the whole document without keeping it.
struct FirstDuplicateKey(Option<String>);

impl<'de> de::Deserialize<'de> for FirstDuplicateKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DuplicateWalk { path: "" }
            .deserialize(deserializer)
            .map(FirstDuplicateKey)
    }
}

/// Visits one JSON value at `path`; yields the first duplicate key within it.
struct DuplicateWalk<'p> {
    path: &'p str,
}

impl DuplicateWalk<'_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'de> DeserializeSeed<'de> for DuplicateWalk<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for DuplicateWalk<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        let mut index = 0usize;
        loop {
            let path = format!("{}[{index}]", self.path);
            match seq.next_element_seed(DuplicateWalk { path: &path })? {
                Some(found) => first = first.or(found),
                None => return Ok(first),
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = HashSet::new();
        let mut first = None;
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if !keys.insert(key) && first.is_none() {
                first = Some(path.clone());
            }
            let nested = map.next_value_seed(DuplicateWalk { path: &path })?;
            first = first.or(nested);
        }
        Ok(first)
    }
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Maps a serde error to a field-level validation problem. serde reports unknown and
/// missing fields only in its message, so the field name is read from the backticks there;
/// its type errors are put in our words (see [`type_message`]).
fn body_error(path: String, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;

    let full = err.to_string();
    let message = full.split(" at line ").next().unwrap_or(&full).to_owned();
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ApiError::field(
            "body",
            "malformed_json",
            format!("the body is not valid JSON: {message}"),
        );
    }
    let path = echo(&path, MAX_ECHOED_NAME);
    let quoted = message
        .split('`')
        .nth(1)
        .map(|name| echo(name, MAX_ECHOED_NAME));
    let prefixed = |name: &str| {
        if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let (Some(name), true) = (&quoted, message.starts_with("unknown field")) {
        // The names after `expected` are the struct's own fields, never the client's.
        let allowed = message
            .split_once("expected ")
            .map(|(_, rest)| rest.replace('`', ""))
            .unwrap_or_default();
        let hint = if allowed.is_empty() {
            String::new()
        } else {
            format!("; expected {allowed}")
        };
        // serde_path_to_error's path already ends at the unknown field.
        let field = if path == "." {
            name.clone()
        } else {
            path.clone()
        };
        return ApiError::field(
            &field,
            "unknown_field",
            format!("unknown field {name}{hint}"),
        );
    }
    if let (Some(name), true) = (&quoted, message.starts_with("missing field")) {
        return ApiError::field(&prefixed(name), "required", format!("{name} is required"));
    }
    let field = if path == "." { "body".to_owned() } else { path };
    let message = type_message(&field, &message)
        // Another type's own error (a UUID, a date): shown, but never at any length.
        .unwrap_or_else(|| format!("{field} is invalid: {}", echo(&message, 200)));
    ApiError::field(&field, "invalid_type", message)
}

/// serde's `invalid type: <got>, expected <wanted>`, `invalid value: …` and `unknown variant
/// …` in our words, naming the field and never repeating the value, e.g. `expires_in_days
/// must be a whole number; got a number with a fraction or an exponent`. `None` for any
/// other message.
fn type_message(field: &str, message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        // `one of `a`, `b`, `c``, `` `a` or `b` `` or `` `a` ``: our type's variants.
        let allowed = rest.split_once(", expected ")?.1;
        return Some(format!("{field} must be {}", allowed.replace('`', "")));
    }
    let (out_of_range, rest) = match message.strip_prefix("invalid type: ") {
        Some(rest) => (false, rest),
        None => (true, message.strip_prefix("invalid value: ")?),
    };
    // The expected part is our type's; the value before it may contain anything.
    let (got, expected) = rest.rsplit_once(", expected ")?;
    let got = if got.starts_with("string ") {
        "a string"
    } else if got.starts_with("integer ") {
        "a whole number"
    } else if got.starts_with("floating point ") {
        "a number with a fraction or an exponent"
    } else if got.starts_with("boolean ") {
        "true or false"
    } else if got == "null" || got == "unit value" {
        "null"
    } else if got == "map" {
        "an object"
    } else if got == "sequence" {
        "a list"
    } else {
        "a value of another type"
    };
    let wanted = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64" | "i128"
        | "isize" => {
            if out_of_range && got == "a whole number" {
                return Some(format!(
                    "{field} must be a whole number from {}",
                    integer_range(expected)?
                ));
            }
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a string or bytes" | "a character" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "a list (a JSON array)",
        "a map" => "an object",
        other if other.starts_with("struct ") => "an object",
        other if other.starts_with("tuple") => "a list (a JSON array)",
        _ => return None,
    };
    Some(format!("{field} must be {wanted}; got {got}"))
}

/// `0 to 4294967295` for `u32`, from the type's own bounds.
fn integer_range(type_name: &str) -> Option<String> {
    let (min, max) = match type_name {
        "u8" => (0, i128::from(u8::MAX)),
        "u16" => (0, i128::from(u16::MAX)),
        "u32" => (0, i128::from(u32::MAX)),
        "u64" | "usize" => (0, i128::from(u64::MAX)),
        "i8" => (i128::from(i8::MIN), i128::from(i8::MAX)),
        "i16" => (i128::from(i16::MIN), i128::from(i16::MAX)),
        "i32" => (i128::from(i32::MIN), i128::from(i32::MAX)),
        "i64" | "isize" => (i128::from(i64::MIN), i128::from(i64::MAX)),
        _ => return None,
    };
    Some(format!("{min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    #[allow(dead_code)]
    struct Body {
        slug: String,
        name: Option<String>,
        tags: Vec<serde_json::Value>,
        expires_in_days: Option<u32>,
        offset: i16,
        live: bool,
        color: Option<Color>,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    enum Color {
        Red,
        Green,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depth: u8,
    }

    fn refused(json: &str) -> (String, String, String) {
        let err = JsonBody(Bytes::from(json.to_owned()))
            .parse::<Body>()
            .unwrap_err();
        let ApiError::Validation { errors, .. } = err else {
            panic!("not a validation error: {err:?}")
        };
        let e = &errors[0];
        (e.field.clone(), e.code.clone(), e.message.clone())
    }

    fn field_and_code(json: &str) -> (String, String) {
        let (field, code, _) = refused(json);
        (field, code)
    }

    #[test]
    fn body_errors_name_the_field() {
        assert_eq!(
            field_and_code(r#"{"slug":"a","nmae":"x"}"#),
            ("nmae".into(), "unknown_field".into())
        );
        assert_eq!(
            field_and_code(r#"{"slug":3}"#),
            ("slug".into(), "invalid_type".into())
        );
        assert_eq!(
            field_and_code(r#"{"slug":"a""#),
            ("body".into(), "malformed_json".into())
        );
        assert_eq!(
            field_and_code(r#"{"slug":"a"} x"#),
            ("body".into(), "malformed_json".into())
        );
        assert_eq!(field_and_code("[]"), ("body".into(), "invalid_type".into()));
        assert_eq!(field_and_code(""), ("body".into(), "required".into()));
    }

    #[test]
    fn type_errors_are_in_our_words_and_never_repeat_the_value() {
        let cases = [
            (
                r#"{"expires_in_days":1e20}"#,
                "expires_in_days",
                "expires_in_days must be a whole number; got a number with a fraction or an \
                 exponent",
            ),
            (
                r#"{"expires_in_days":-1}"#,
                "expires_in_days",
                "expires_in_days must be a whole number from 0 to 4294967295",
            ),
            (
                r#"{"expires_in_days":5000000000}"#,
                "expires_in_days",
                "expires_in_days must be a whole number from 0 to 4294967295",
            ),
            (
                r#"{"offset":40000}"#,
                "offset",
                "offset must be a whole number from -32768 to 32767",
            ),
            (
                r#"{"expires_in_days":"30"}"#,
                "expires_in_days",
                "expires_in_days must be a whole number; got a string",
            ),
            (
                r#"{"slug":3}"#,
                "slug",
                "slug must be a string; got a whole number",
            ),
            (
                r#"{"slug":null}"#,
                "slug",
                "slug must be a string; got null",
            ),
            (
                r#"{"name":{"a":1}}"#,
                "name",
                "name must be a string; got an object",
            ),
            (
                r#"{"tags":"x"}"#,
                "tags",
                "tags must be a list (a JSON array); got a string",
            ),
            (
                r#"{"live":"yes"}"#,
                "live",
                "live must be true or false; got a string",
            ),
            (r#"{"color":"blue"}"#, "color", "color must be red or green"),
            (
                r#"{"inner":"x"}"#,
                "inner",
                "inner must be an object; got a string",
            ),
            (
                r#"{"inner":{"depth":1.5}}"#,
                "inner.depth",
                "inner.depth must be a whole number; got a number with a fraction or an \
                 exponent",
            ),
        ];
        for (json, field, message) in cases {
            assert_eq!(
                refused(json),
                (field.into(), "invalid_type".into(), message.into()),
                "{json}"
            );
        }
        // A long wrong value is not sent back.
        let long = format!(r#"{{"expires_in_days":"{}"}}"#, "9".repeat(5000));
        let (_, _, message) = refused(&long);
        assert!(!message.contains("999"), "{message}");
    }

    #[test]
    fn client_names_are_echoed_short() {
        let key = "k".repeat(5000);
        let (field, code, message) = refused(&format!(r#"{{"{key}":1}}"#));
        assert_eq!(code, "unknown_field");
        assert_eq!(field, format!("{}…", "k".repeat(MAX_ECHOED_NAME)));
        assert!(message.len() < 300, "{message}");
        let (field, code, _) = refused(&format!(r#"{{"inner":{{"{key}":1}}}}"#));
        assert_eq!(code, "unknown_field");
        assert!(field.chars().count() <= MAX_ECHOED_NAME + 1, "{field}");
        let (field, code, message) = refused(&format!(r#"{{"{key}":1,"{key}":2}}"#));
        assert_eq!(code, "duplicate_key");
        assert!(field.len() < 100 && message.len() < 100, "{message}");
        let Err(ApiError::Validation { errors, detail }) =
            query_params(&format!("{key}=1&{key}=2"))
        else {
            panic!("a repeated parameter was taken")
        };
        assert_eq!(errors[0].code, "duplicate");
        assert!(
            detail.len() < 200 && errors[0].field.len() < 100,
            "{detail}"
        );
    }

    #[test]
    fn echoes_are_cut_and_escaped() {
        assert_eq!(echo("prod", 30), "prod");
        assert_eq!(echo(&"a".repeat(30), 30), "a".repeat(30));
        assert_eq!(echo(&"é".repeat(31), 30), format!("{}…", "é".repeat(30)));
        assert_eq!(echo("a\u{1b}[31mb\n\0", 30), "a\\u{1b}[31mb\\n\\u{0}");
    }

    #[test]
    fn duplicate_keys_are_refused_wherever_they_are() {
        assert_eq!(
            refused(r#"{"slug":"a","name":"n","slug":"b"}"#),
            (
                "slug".into(),
                "duplicate_key".into(),
                "duplicate key `slug`".into()
            )
        );
        // The same key spelled with an escape is the same key.
        assert_eq!(
            field_and_code(r#"{"slug":"a","sl\u0075g":"a"}"#).1,
            "duplicate_key"
        );
        assert_eq!(
            field_and_code(r#"{"slug":"a","tags":[1,{"x":1,"y":{"z":0,"z":1}}]}"#),
            ("tags[1].y.z".into(), "duplicate_key".into())
        );
        // Before the type checks: the ambiguity is the first thing wrong with the body.
        assert_eq!(
            field_and_code(r#"{"slug":3,"slug":"b"}"#),
            ("slug".into(), "duplicate_key".into())
        );
        // The same name in two objects is no duplicate.
        let ok = JsonBody(Bytes::from_static(
            br#"{"slug":"a","tags":[{"slug":1},{"slug":2}]}"#,
        ));
        assert_eq!(ok.parse::<Body>().unwrap().slug, "a");
        assert!(ok.duplicate_key_problem().is_none());
        // Malformed JSON is still malformed JSON.
        assert_eq!(
            field_and_code(r#"{"slug":"a","slug":"#),
            ("body".into(), "malformed_json".into())
        );
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&headers));
    }

    fn query_refusal(query: &str) -> (String, String) {
        let Err(ApiError::Validation { errors, .. }) = query_params(query) else {
            panic!("{query} was not refused")
        };
        (errors[0].field.clone(), errors[0].code.clone())
    }

    #[test]
    fn queries_are_decoded_strictly() {
        assert_eq!(
            query_params("state=active&after=a%2Db&q=x+y&flag&&=z").unwrap(),
            vec![
                ("state".into(), "active".into()),
                ("after".into(), "a-b".into()),
                ("q".into(), "x y".into()),
                ("flag".into(), String::new()),
            ]
        );
        assert_eq!(
            query_refusal("limit=1&limit=2"),
            ("limit".into(), "duplicate".into())
        );
        assert_eq!(
            query_refusal("after=%FF"),
            ("after".into(), "invalid_utf8".into())
        );
        assert_eq!(
            query_refusal("%C3%28=1"),
            ("query".into(), "invalid_utf8".into())
        );
    }
}
