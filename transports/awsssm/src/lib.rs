//! The `awsssm` railbox transport: commands and files on EC2 and managed
//! instances through AWS Systems Manager Run Command, from a sandboxed
//! component that holds no credentials.
//!
//! This file is the export boundary: it describes the transport, turns the
//! host's target into a `remote::Remote` and WIT values into ours and back.
//! The protocol lives in the modules below; only `wasi` touches the outside.

mod api;
mod error;
mod files;
mod framing;
mod http;
mod invoke;
mod options;
mod poll;
mod remote;
mod target;
mod wasi;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::error::Error;
use crate::http::{Client, Host, Idempotency, Level};
use crate::options::{Config, Kind, SPECS, Value};
use crate::remote::Remote;
use crate::target::{Instance, Wanted};

/// Bindings generated from the WIT contract.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "transport" });

    #[cfg(target_arch = "wasm32")]
    use super::Component;

    // Exported only in wasm: a native build (the unit tests, clippy) cannot
    // link symbol names that hold WIT package paths.
    #[cfg(target_arch = "wasm32")]
    export!(Component);
}

use bindings::exports::railbox::transport::session_api as wit_api;
use bindings::railbox::transport::types as wit;

/// The exported component.
struct Component;

/// An open session, as the host holds it.
struct Session {
    remote: Remote<wasi::WasiHost>,
}

impl wit_api::Guest for Component {
    type Session = Session;

    fn describe() -> wit::Description {
        description()
    }
}

impl wit_api::GuestSession for Session {
    fn open(target: wit::Target) -> Result<wit_api::Session, wit::Error> {
        open(target).map(wit_api::Session::new).map_err(to_wit)
    }

    fn run(&self, command: String, timeout_ms: u64) -> Result<wit::CommandOutput, wit::Error> {
        let output = self
            .remote
            .run(&command, Duration::from_millis(timeout_ms))
            .map_err(to_wit)?;
        Ok(wit::CommandOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_status: output.exit,
        })
    }

    fn upload(&self, path: String, data: Vec<u8>, mode: Option<u32>) -> Result<(), wit::Error> {
        self.remote.upload(&path, &data, mode).map_err(to_wit)
    }

    fn download(&self, path: String) -> Result<Vec<u8>, wit::Error> {
        self.remote.download(&path).map_err(to_wit)
    }

    fn close(&self) -> Result<(), wit::Error> {
        self.remote.close();
        Ok(())
    }
}

/// The transport's description: options, schemes and the capabilities it needs.
fn description() -> wit::Description {
    let options = SPECS
        .iter()
        .map(|s| wit::OptionSpec {
            name: s.name.to_string(),
            type_: match s.kind {
                Kind::Text => wit::OptionType::String,
                Kind::Integer => wit::OptionType::Integer,
            },
            default: s.default.map(str::to_string),
            doc: s.doc.to_string(),
            secret: false,
        })
        .collect();
    let ssm = wit::AwsService {
        signing_name: "ssm".into(),
        endpoint_prefix: "ssm".into(),
        endpoint_env_id: "SSM".into(),
        actions: api::ACTIONS.iter().map(|a| a.to_string()).collect(),
        region_option: Some("region".into()),
        profile_option: Some("profile".into()),
        endpoint_option: Some("endpoint".into()),
    };
    wit::Description {
        name: "awsssm".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        summary: "AWS Systems Manager Run Command: instances without inbound ports".into(),
        schemes: vec!["awsssm".into()],
        options,
        needs: wit::Needs {
            http: Vec::new(),
            aws: vec![ssm],
            streams: Vec::new(),
        },
    }
}

fn open(target: wit::Target) -> Result<Session, Error> {
    let wanted = check_target(&target)?;
    let options: Vec<(String, Value)> = target
        .options
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                wit::OptionValue::String(s) => Value::Text(s),
                wit::OptionValue::Integer(i) => Value::Integer(i),
                _ => Value::Other,
            };
            (name, value)
        })
        .collect();
    let config = Config::from_options(&options)?;
    let settings = bindings::railbox::transport::aws::settings("ssm").map_err(from_wit)?;
    let endpoint = wasi::Endpoint::parse(&settings.endpoint)?;
    let client = Client::new(wasi::WasiHost::new(endpoint));
    let instance = lookup(&client, &wanted, &settings.region)?;
    client.host.log(
        Level::Info,
        &format!(
            "opened awsssm session to {} ({}) in {}",
            instance.id, instance.platform, settings.region
        ),
    );
    Ok(Session {
        remote: Remote::new(client, instance, config),
    })
}

/// Check the parts of the URL the transport does not use, and read its host.
fn check_target(target: &wit::Target) -> Result<Wanted, Error> {
    if target.scheme != "awsssm" {
        return Err(Error::InvalidTarget(format!(
            "scheme {:?} is not awsssm",
            target.scheme
        )));
    }
    if target.user.is_some() {
        return Err(Error::InvalidTarget(
            "awsssm runs commands as the SSM agent's user (root); a user in the URL is not \
             supported"
                .into(),
        ));
    }
    if target.port.is_some() {
        return Err(Error::InvalidTarget("awsssm takes no port".into()));
    }
    if !matches!(target.path.as_str(), "" | "/") {
        return Err(Error::InvalidTarget(format!(
            "awsssm takes no path, got {:?}",
            target.path
        )));
    }
    Wanted::parse(target.host.as_deref().unwrap_or(""))
}

/// Find the instance a target names with DescribeInstanceInformation.
fn lookup<H: Host>(client: &Client<H>, wanted: &Wanted, region: &str) -> Result<Instance, Error> {
    let deadline = client.host.now() + Duration::from_secs(120);
    let filter = wanted.filter();
    let mut found = Vec::new();
    let mut next_token: Option<String> = None;
    // Pages are read until the last one: SSM may answer a filtered query
    // with an empty page and a token, and addresses have no filter at all
    // (private addresses can repeat across VPCs). Only an id, which is
    // unique, ends the search as soon as it is found.
    for _ in 0..40 {
        let body = api::describe_instance_information(
            filter.as_ref().map(|(k, v)| (*k, v.as_str())),
            next_token.as_deref(),
        );
        let response = client
            .call(
                api::DESCRIBE_INSTANCE_INFORMATION,
                &body,
                Idempotency::Safe,
                Some(deadline),
            )
            .map_err(|e| match e {
                http::CallError::Service(s) if s.is("InvalidInstanceId") => Error::NotFound(
                    format!("SSM does not know {} in {region} ({s})", wanted.describe()),
                ),
                http::CallError::Denied(m) => {
                    Error::Denied(format!("DescribeInstanceInformation in {region}: {m}"))
                }
                http::CallError::Deadline(m) => {
                    Error::Timeout(format!("DescribeInstanceInformation in {region}: {m}"))
                }
                other => Error::Io(format!("DescribeInstanceInformation in {region}: {other}")),
            })?;
        let (page, next) = api::parse_instances(&response)?;
        found.extend(page.into_iter().filter(|i| wanted.matches(i)));
        let settled = matches!(wanted, Wanted::Id(_)) && !found.is_empty();
        match next {
            Some(token) if !settled => next_token = Some(token),
            _ => break,
        }
    }
    target::choose(wanted, &found, region)
}

fn to_wit(e: Error) -> wit::Error {
    match e {
        Error::InvalidTarget(m) => wit::Error::InvalidTarget(m),
        Error::NotFound(m) => wit::Error::NotFound(m),
        Error::Denied(m) => wit::Error::Denied(m),
        Error::Timeout(m) => wit::Error::Timeout(m),
        Error::Unsupported(m) => wit::Error::Unsupported(m),
        Error::Protocol(m) => wit::Error::Protocol(m),
        Error::Io(m) => wit::Error::Io(m),
    }
}

fn from_wit(e: wit::Error) -> Error {
    match e {
        wit::Error::InvalidTarget(m) => Error::InvalidTarget(m),
        wit::Error::NotFound(m) => Error::NotFound(m),
        wit::Error::Denied(m) => Error::Denied(m),
        wit::Error::Timeout(m) => Error::Timeout(m),
        wit::Error::Unsupported(m) => Error::Unsupported(m),
        wit::Error::Protocol(m) => Error::Protocol(m),
        wit::Error::Io(m) => Error::Io(m),
    }
}
