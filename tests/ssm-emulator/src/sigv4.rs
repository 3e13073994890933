//! SigV4 verification of incoming requests.
//!
//! The expected signature is computed with `aws-sigv4` from the received request,
//! using exactly the headers the client listed in `SignedHeaders`, the configured
//! secret for the access key and the client's own `X-Amz-Date`. Failures map to
//! the errors AWS JSON services return.
//!
//! Status codes: all of these are HTTP 400. REST services such as Lambda
//! answer some of them with 403, but for awsJson services (SSM, DynamoDB, Kinesis, ECR) client logs report
//! "Status Code: 400" for `UnrecognizedClientException`,
//! `InvalidSignatureException` and `MissingAuthenticationTokenException` alike,
//! so the emulator follows them.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;

use crate::config::Credentials;
use crate::protocol::ApiError;
use crate::timefmt;

/// How far `X-Amz-Date` may be from the emulator's clock.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "ssm";

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    scope_date: &'a str,
    scope_region: &'a str,
    scope_service: &'a str,
    scope_terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// What a verifier needs to know about the emulator.
pub(crate) struct Verifier<'a> {
    pub(crate) region: &'a str,
    pub(crate) credentials: &'a [Credentials],
}

impl Verifier<'_> {
    /// Checks the signature of a request whose body has been read.
    pub(crate) fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let Some(header) = headers.get(http::header::AUTHORIZATION) else {
            return Err(missing_token());
        };
        let header = header
            .to_str()
            .map_err(|_| incomplete("Authorization header is not ASCII"))?;
        let auth = parse_authorization(header)?;

        let date_text = header_str(headers, "x-amz-date").ok_or_else(|| {
            incomplete("Authorization header requires existence of an 'X-Amz-Date' header")
        })?;
        let date = timefmt::parse_amz_date(date_text).ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Date must be in the ISO-8601 basic format yyyyMMdd'T'HHmmss'Z', got '{date_text}'"
            ))
        })?;
        check_freshness(date_text, date, now)?;
        self.check_scope(&auth, date_text)?;

        let creds = self
            .credentials
            .iter()
            .find(|c| c.access_key_id == auth.access_key_id)
            .ok_or_else(unrecognized)?;
        let token = header_str(headers, "x-amz-security-token");
        if token != creds.session_token.as_deref() {
            return Err(unrecognized());
        }

        let expected = expected_signature(ExpectedInput {
            method,
            path_and_query,
            headers,
            body,
            signed_headers: &auth.signed_headers,
            creds,
            token,
            region: self.region,
            time: date,
        })
        .ok_or_else(mismatch)?;
        if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            Ok(())
        } else {
            Err(mismatch())
        }
    }

    fn check_scope(&self, auth: &Authorization<'_>, date_text: &str) -> Result<(), ApiError> {
        if auth.scope_terminator != "aws4_request" {
            return Err(invalid(
                "Credential should be scoped with a valid terminator: 'aws4_request'".into(),
            ));
        }
        if !date_text.starts_with(auth.scope_date) || auth.scope_date.len() != 8 {
            return Err(invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{}' != '{}'",
                auth.scope_date,
                &date_text[..8]
            )));
        }
        if auth.scope_region != self.region {
            return Err(invalid(format!(
                "Credential should be scoped to a valid region, not '{}'",
                auth.scope_region
            )));
        }
        if auth.scope_service != SERVICE {
            return Err(invalid(format!(
                "Credential should be scoped to correct service: '{SERVICE}'"
            )));
        }
        Ok(())
    }
}

struct ExpectedInput<'a> {
    method: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    signed_headers: &'a [&'a str],
    creds: &'a Credentials,
    token: Option<&'a str>,
    region: &'a str,
    time: SystemTime,
}

/// Recomputes the signature over the headers the client says it signed.
fn expected_signature(input: ExpectedInput<'_>) -> Option<String> {
    // The signer adds x-amz-date and x-amz-security-token itself, from the
    // signing time and the identity; everything else comes from the request.
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for name in input.signed_headers {
        if *name == "x-amz-date" || *name == "x-amz-security-token" {
            continue;
        }
        let values = input.headers.get_all(*name);
        let mut any = false;
        for value in values {
            pairs.push((name, value.to_str().ok()?));
            any = true;
        }
        if !any {
            return None;
        }
    }
    if !input.signed_headers.contains(&"host") {
        // Without a host the canonical request cannot be built; AWS requires it signed.
        return None;
    }

    let identity: Identity = aws_credential_types::Credentials::new(
        &input.creds.access_key_id,
        &input.creds.secret_access_key,
        input.token.map(str::to_owned),
        None,
        "ssm-emulator",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed, including headers the SDK would skip.
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region)
        .name(SERVICE)
        .time(input.time)
        .settings(settings)
        .build()
        .ok()?
        .into();
    let request = SignableRequest::new(
        input.method,
        input.path_and_query,
        pairs.into_iter(),
        SignableBody::Bytes(input.body),
    )
    .ok()?;
    let (_, signature) = sign(request, &params).ok()?.into_parts();
    Some(signature)
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, ApiError> {
    let Some(rest) = header.strip_prefix(ALGORITHM) else {
        return Err(incomplete(format!(
            "Authorization header must start with the algorithm '{ALGORITHM}'"
        )));
    };
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, value) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if value.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(missing.join(" ")));
    }
    let (credential, signed, signature) = (
        credential.unwrap_or_default(),
        signed.unwrap_or_default(),
        signature.unwrap_or_default(),
    );
    let scope: Vec<&str> = credential.split('/').collect();
    let [
        access_key_id,
        scope_date,
        scope_region,
        scope_service,
        scope_terminator,
    ] = scope[..]
    else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-separated components, got '{credential}'"
        )));
    };
    Ok(Authorization {
        access_key_id,
        scope_date,
        scope_region,
        scope_service,
        scope_terminator,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

fn check_freshness(date_text: &str, date: SystemTime, now: SystemTime) -> Result<(), ApiError> {
    let now_text = timefmt::amz_date(now);
    if date + MAX_CLOCK_SKEW < now {
        let earliest = timefmt::amz_date(now - MAX_CLOCK_SKEW);
        return Err(invalid(format!(
            "Signature expired: {date_text} is now earlier than {earliest} ({now_text} - 5 min.)"
        )));
    }
    if date > now + MAX_CLOCK_SKEW {
        let latest = timefmt::amz_date(now + MAX_CLOCK_SKEW);
        return Err(invalid(format!(
            "Signature not yet current: {date_text} is still later than {latest} ({now_text} + 5 min.)"
        )));
    }
    Ok(())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn missing_token() -> ApiError {
    ApiError::client(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::client("IncompleteSignatureException", message)
}

fn invalid(message: String) -> ApiError {
    ApiError::client("InvalidSignatureException", message)
}

fn mismatch() -> ApiError {
    invalid(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
            .into(),
    )
}

fn unrecognized() -> ApiError {
    ApiError::client(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "AWS4-HMAC-SHA256 Credential=AKID/20261203/us-east-1/ssm/aws4_request, \
                          SignedHeaders=content-type;host;x-amz-date, Signature=abc123";

    #[test]
    fn authorization_headers_parse_into_scope_and_headers() {
        let auth = parse_authorization(SAMPLE).unwrap();
        assert_eq!(auth.access_key_id, "AKID");
        assert_eq!(auth.scope_region, "us-east-1");
        assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(auth.signature, "abc123");
    }

    #[test]
    fn incomplete_authorization_names_what_is_missing() {
        let err = parse_authorization("AWS4-HMAC-SHA256 Credential=AKID/x/y/z/w").unwrap_err();
        assert_eq!(err.code, "IncompleteSignatureException");
        assert!(err.message.contains("'Signature'"));
        assert!(err.message.contains("'SignedHeaders'"));
        let err = parse_authorization("Basic abc").unwrap_err();
        assert_eq!(err.code, "IncompleteSignatureException");
    }

    #[test]
    fn stale_dates_are_reported_as_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let old = now - Duration::from_secs(600);
        let err = check_freshness(&timefmt::amz_date(old), old, now).unwrap_err();
        assert!(
            err.message.starts_with("Signature expired:"),
            "{}",
            err.message
        );
        assert!(check_freshness("", now - Duration::from_secs(60), now).is_ok());
    }
}
