//! AWS settings and request signing, done by the host for its transports.
//!
//! The host resolves region, endpoint and credentials with aws-config's
//! standard chain (environment, profile, SSO, web identity, container, instance
//! metadata) and signs a transport's requests with SigV4 on their way out. A
//! transport learns the region and endpoint, never a key, and only the actions
//! the policy lists are signed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_types::service_config::ServiceConfigKey;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::{Error, WasiBody};

use crate::bindings::types::{AwsService, OptionValue, Target};
use crate::policy::{AwsGrant, HttpRule, Origin, PolicyError};

/// The signer for one AWS service, holding the credentials provider.
struct Signer {
    provider: SharedCredentialsProvider,
    /// Credentials from the last resolution, reused until near expiry: the
    /// chain may read files or call a metadata service to produce them.
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

/// How long before their expiry cached credentials are renewed.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

impl Signer {
    fn new(provider: SharedCredentialsProvider) -> Signer {
        Signer {
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        let fresh_enough = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE_EXPIRY)
        };
        if let Some(credentials) = cached.as_ref().filter(|c| fresh_enough(c)) {
            return Ok(credentials.clone());
        }
        let credentials = self.provider.provide_credentials().await?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}

/// Signers by signing name, shared by a session's HTTP gate.
#[derive(Clone, Default)]
pub struct Signers {
    by_service: Arc<HashMap<String, Signer>>,
}

impl Signers {
    /// Sign `req` for `grant` if its action is allowed; deny it otherwise.
    pub async fn sign(
        &self,
        grant: &AwsGrant,
        req: Request<WasiBody>,
        max_body: u64,
    ) -> Result<Request<WasiBody>, Error> {
        let action = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !grant.actions.contains(&action) {
            tracing::warn!(
                service = %grant.signing_name,
                action = %action,
                "denied signing of an AWS action the policy does not allow"
            );
            return Err(Error::HttpRequestDenied);
        }
        let signer = self.by_service.get(&grant.signing_name).ok_or_else(|| {
            Error::InternalError(Some(format!("no signer for {}", grant.signing_name)))
        })?;
        let credentials = signer.credentials().await.map_err(|e| {
            tracing::warn!(error = %e, "no AWS credentials");
            Error::InternalError(Some("no AWS credentials available to sign with".into()))
        })?;

        let (mut parts, body) = req.into_parts();
        let body = collect_limited(body, max_body).await?;
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&grant.region)
            .name(&grant.signing_name)
            .time(SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?
            .into();
        let uri = full_uri(&parts, grant)?;
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = aws_sigv4::http_request::SignableRequest::new(
            parts.method.as_str(),
            uri,
            headers,
            aws_sigv4::http_request::SignableBody::Bytes(&body),
        )
        .map_err(|e| Error::InternalError(Some(e.to_string())))?;
        let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
            .map_err(|e| Error::InternalError(Some(e.to_string())))?
            .into_parts();
        let mut signed = Request::from_parts(parts.clone(), ());
        instructions.apply_to_request_http1x(&mut signed);
        parts.headers = signed.headers().clone();
        tracing::debug!(service = %grant.signing_name, action = %action, "signed aws request");
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok(Request::from_parts(parts, body))
    }
}

fn full_uri(parts: &http::request::Parts, grant: &AwsGrant) -> Result<String, Error> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(format!(
        "{}://{}:{}{}",
        grant.endpoint.scheme, grant.endpoint.host, grant.endpoint.port, path
    ))
}

async fn collect_limited(body: WasiBody, max: u64) -> Result<Bytes, Error> {
    let limited = http_body_util::Limited::new(body, max as usize);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => match err.downcast::<Error>() {
            Ok(err) => Err(*err),
            Err(_) => Err(Error::HttpRequestBodySize(Some(max))),
        },
    }
}

/// The AWS part of a session's policy, with the signers behind it.
pub struct AwsSetup {
    /// One grant per service the transport declared.
    pub grants: Vec<AwsGrant>,
    /// Signers for those grants.
    pub signers: Signers,
}

/// Resolve region, endpoint and credentials for each AWS service a
/// transport declares; `credentials`, when given, replaces the chain.
pub async fn resolve(
    services: &[AwsService],
    target: &Target,
    credentials: Option<SharedCredentialsProvider>,
) -> Result<AwsSetup, PolicyError> {
    let mut grants = Vec::new();
    let mut signers = HashMap::new();
    for service in services {
        let profile = option_text(target, service.profile_option.as_deref());
        let region = option_text(target, service.region_option.as_deref());
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &region {
            loader = loader.region(aws_types::region::Region::new(region.clone()));
        }
        if let Some(credentials) = &credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| PolicyError::Aws {
                service: service.signing_name.clone(),
                reason: "no region: set the region option or AWS_REGION".into(),
            })?;
        check_region(&service.signing_name, &region)?;
        let endpoint = endpoint_for(service, target, &config, &region)?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| PolicyError::Aws {
                service: service.signing_name.clone(),
                reason: "no credentials provider".into(),
            })?;
        signers.insert(service.signing_name.clone(), Signer::new(provider));
        grants.push(AwsGrant {
            signing_name: service.signing_name.clone(),
            region,
            endpoint,
            actions: service.actions.iter().cloned().collect::<BTreeSet<_>>(),
            profile,
        });
    }
    Ok(AwsSetup {
        grants,
        signers: Signers {
            by_service: Arc::new(signers),
        },
    })
}

/// The endpoint for a service: the transport's endpoint option, then
/// `AWS_ENDPOINT_URL_<ID>`, the profile's service endpoint, `AWS_ENDPOINT_URL`
/// and the profile's `endpoint_url`, then the public regional endpoint.
fn endpoint_for(
    service: &AwsService,
    target: &Target,
    config: &aws_types::SdkConfig,
    region: &str,
) -> Result<HttpRule, PolicyError> {
    let env = format!("AWS_ENDPOINT_URL_{}", service.endpoint_env_id);
    let configured = option_text(target, service.endpoint_option.as_deref())
        .or_else(|| {
            let key = ServiceConfigKey::builder()
                .service_id(&service.endpoint_env_id)
                .env(&env)
                .profile("endpoint_url")
                .build()
                .ok()?;
            config.service_config()?.load_config(key)
        })
        .or_else(|| config.endpoint_url().map(str::to_string));
    match configured {
        Some(url) => HttpRule::parse(url.trim_end_matches('/'), Origin::User),
        None => HttpRule::parse(
            &format!("https://{}.{region}.amazonaws.com", service.endpoint_prefix),
            Origin::Transport,
        ),
    }
}

fn check_region(service: &str, region: &str) -> Result<(), PolicyError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PolicyError::Aws {
            service: service.to_string(),
            reason: format!("{region:?} is not a region name"),
        })
    }
}

fn option_text(target: &Target, name: Option<&str>) -> Option<String> {
    let name = name?;
    target.options.iter().find_map(|(k, v)| match v {
        OptionValue::String(s) if k == name && !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}
