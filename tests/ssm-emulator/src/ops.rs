//! SendCommand, GetCommandInvocation and CancelCommand, plus request validation
//! shared with the listing operations.
//!
//! Validation follows the service's order of concerns: modelled constraints
//! (`ValidationException`) first, then the operation's own errors such as
//! `InvalidDocument` or `InvalidInstanceId`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::agent;
use crate::config::{PingStatus, PlatformType, is_instance_id};
use crate::emulator::Shared;
use crate::listing;
use crate::protocol::{
    self, ApiError, CancelCommandInput, CommandOut, GetCommandInvocationInput,
    GetCommandInvocationOut, Operation, SendCommandInput, Target,
};
use crate::store::{CommandRecord, Document, State};
use crate::timefmt;

/// Most instance ids per request.
const MAX_INSTANCE_IDS: usize = 50;
/// Execution timeout the agent uses when none or an out-of-range one is given.
const DEFAULT_EXECUTION_TIMEOUT: u64 = 3600;
/// Allowed execution timeouts; values outside fall back to the default, as in the agent.
const EXECUTION_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 5..=172_800;

/// Runs one operation on a request body and returns the response body.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    op: Operation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        Operation::SendCommand => send_command(shared, protocol::parse(body)?),
        Operation::GetCommandInvocation => get_command_invocation(shared, protocol::parse(body)?),
        Operation::CancelCommand => cancel_command(shared, protocol::parse(body)?),
        Operation::ListCommandInvocations => {
            listing::list_command_invocations(shared, protocol::parse(body)?)
        }
        Operation::ListCommands => listing::list_commands(shared, protocol::parse(body)?),
        Operation::DescribeInstanceInformation => {
            listing::describe_instance_information(shared, protocol::parse(body)?)
        }
    }
}

/// Serializes a response body.
pub(crate) fn to_body(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("encoding response: {e}")))
}

fn send_command(shared: &Arc<Shared>, input: SendCommandInput) -> Result<Vec<u8>, ApiError> {
    let document_name = input
        .document_name
        .clone()
        .ok_or_else(|| ApiError::missing("documentName"))?;
    check_document_name(&document_name)?;
    let instance_ids = input.instance_ids.clone().unwrap_or_default();
    let targets = input.targets.clone().unwrap_or_default();
    check_instance_ids("instanceIds", &instance_ids)?;
    check_targets(&targets)?;
    let timeout_seconds = input.timeout_seconds.unwrap_or(3600);
    if !(30..=2_592_000).contains(&timeout_seconds) {
        return Err(ApiError::validation(
            "timeoutSeconds",
            "Member must have value between 30 and 2592000",
        ));
    }
    let comment = input.comment.clone().unwrap_or_default();
    if comment.chars().count() > 100 {
        return Err(ApiError::validation(
            "comment",
            "Member must have length less than or equal to 100",
        ));
    }

    let document = Document::from_name(&document_name).ok_or_else(|| {
        ApiError::client(
            "InvalidDocument",
            format!("document {document_name} does not exist"),
        )
    })?;
    let document_version = input
        .document_version
        .clone()
        .unwrap_or_else(|| "$DEFAULT".into());
    if !matches!(document_version.as_str(), "$DEFAULT" | "$LATEST" | "1") {
        return Err(ApiError::client(
            "InvalidDocumentVersion",
            format!("document {document_name} has no version {document_version}"),
        ));
    }
    let parameters = input.parameters.clone().unwrap_or_default();
    let execution_timeout = check_parameters(shared, &parameters)?;

    let instances = resolve_targets(shared, &instance_ids, &targets)?;
    check_platforms(shared, document, &instances)?;

    let now = SystemTime::now();
    let started = Instant::now();
    let visible_after = Duration::from_millis(shared.faults.get().invocation_does_not_exist_ms);
    let record = CommandRecord {
        id: new_uuid(),
        seq: 0,
        document,
        document_name,
        document_version,
        comment,
        parameters,
        instance_ids: instance_ids.clone(),
        targets: targets.clone(),
        requested: now,
        requested_at: started,
        visible_at: started + visible_after,
        timeout_seconds,
        execution_timeout,
        max_concurrency: input.max_concurrency.clone().unwrap_or_else(|| "50".into()),
        max_errors: input.max_errors.clone().unwrap_or_else(|| "0".into()),
        output_s3_region: input
            .output_s3_region
            .clone()
            .unwrap_or_else(|| shared.config.region.clone()),
        output_s3_bucket_name: input.output_s3_bucket_name.clone().unwrap_or_default(),
        output_s3_key_prefix: input.output_s3_key_prefix.clone().unwrap_or_default(),
        service_role: input.service_role_arn.clone().unwrap_or_default(),
        notification_config: input.notification_config.clone().unwrap_or_default(),
        cloud_watch_output_config: input.cloud_watch_output_config.clone().unwrap_or_default(),
        cancel_requested: false,
        invocations: Vec::new(),
    };

    let (seq, mut out) = {
        let mut store = shared.store();
        let seq = store.insert(record, &instances);
        let command = store
            .get(seq)
            .ok_or_else(|| ApiError::internal("command vanished"))?;
        tracing::debug!(command_id = %command.id, targets = instances.len(), "command sent");
        (seq, command_out(command))
    };
    if !targets.is_empty() {
        // The service has not resolved targets yet when it answers.
        out.target_count = 0;
    }
    agent::dispatch(shared, seq, instances.len());
    to_body(&serde_json::json!({ "Command": out }))
}

fn get_command_invocation(
    shared: &Shared,
    input: GetCommandInvocationInput,
) -> Result<Vec<u8>, ApiError> {
    let command_id = input
        .command_id
        .ok_or_else(|| ApiError::missing("commandId"))?;
    check_command_id(&command_id)?;
    let instance_id = input
        .instance_id
        .ok_or_else(|| ApiError::missing("instanceId"))?;
    check_instance_ids("instanceId", std::slice::from_ref(&instance_id))?;
    if let Some(plugin) = &input.plugin_name
        && plugin.len() < 4
    {
        return Err(ApiError::validation(
            "pluginName",
            "Member must have length greater than or equal to 4",
        ));
    }

    let store = shared.store();
    let not_found = || ApiError::client("InvocationDoesNotExist", "invocation does not exist");
    let command = store
        .by_id(&command_id)
        .filter(|c| Instant::now() >= c.visible_at);
    let command = command.ok_or_else(not_found)?;
    let index = shared
        .instance_index
        .get(&instance_id)
        .ok_or_else(not_found)?;
    let inv = command.invocation(*index).ok_or_else(not_found)?;
    let plugin = command.document.plugin();
    if input.plugin_name.as_deref().is_some_and(|p| p != plugin) {
        return Err(ApiError::client(
            "InvalidPluginName",
            "the plugin name is not valid",
        ));
    }

    let terminal = inv.state.is_terminal();
    let iso = |t: Option<SystemTime>| t.map(timefmt::iso8601).unwrap_or_default();
    let elapsed = match (inv.started, inv.ended) {
        (Some(start), Some(end)) => timefmt::elapsed(end.duration_since(start).unwrap_or_default()),
        _ => String::new(),
    };
    let out = GetCommandInvocationOut {
        command_id: command.id.clone(),
        instance_id,
        comment: command.comment.clone(),
        document_name: command.document_name.clone(),
        document_version: command.document_version.clone(),
        plugin_name: plugin,
        response_code: inv.response_code,
        execution_start_date_time: iso(inv.started),
        execution_elapsed_time: elapsed,
        execution_end_date_time: if inv.started.is_some() {
            iso(inv.ended)
        } else {
            String::new()
        },
        status: inv.state.status(),
        status_details: inv.state.details(),
        standard_output_content: if terminal {
            inv.stdout.clone()
        } else {
            String::new()
        },
        standard_output_url: String::new(),
        standard_error_content: if terminal {
            inv.stderr.clone()
        } else {
            String::new()
        },
        standard_error_url: String::new(),
        cloud_watch_output_config: command.cloud_watch_output_config.clone(),
    };
    to_body(&out)
}

fn cancel_command(shared: &Shared, input: CancelCommandInput) -> Result<Vec<u8>, ApiError> {
    let command_id = input
        .command_id
        .ok_or_else(|| ApiError::missing("commandId"))?;
    check_command_id(&command_id)?;
    let instance_ids = input.instance_ids.unwrap_or_default();
    check_instance_ids("instanceIds", &instance_ids)?;
    let mut seen = HashSet::new();
    if let Some(dup) = instance_ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(ApiError::client(
            "DuplicateInstanceId",
            format!("instance {dup} is listed twice"),
        ));
    }

    let mut store = shared.store();
    let command = store.by_id_mut(&command_id).ok_or_else(|| {
        ApiError::client(
            "InvalidCommandId",
            format!("command {command_id} does not exist"),
        )
    })?;
    let mut chosen = Vec::new();
    for id in &instance_ids {
        let index = shared.instance_index.get(id).copied();
        let found =
            index.and_then(|i| command.invocations.iter().position(|inv| inv.instance == i));
        chosen.push(found.ok_or_else(|| {
            ApiError::client(
                "InvalidInstanceId",
                format!("command {command_id} was not sent to {id}"),
            )
        })?);
    }
    if instance_ids.is_empty() {
        command.cancel_requested = true;
        chosen = (0..command.invocations.len()).collect();
    }
    let now = SystemTime::now();
    for index in chosen {
        let inv = &mut command.invocations[index];
        match inv.state {
            State::Pending => inv.end_unstarted(State::Cancelled, now),
            State::InProgress => {
                inv.state = State::Cancelling;
                if let Some(cancel) = inv.cancel.take() {
                    let _ = cancel.send(());
                }
            }
            _ => {}
        }
    }
    tracing::debug!(%command_id, "command cancelled");
    Ok(b"{}".to_vec())
}

/// The `Command` object for a stored command.
pub(crate) fn command_out(command: &CommandRecord) -> CommandOut {
    let (status, status_details) = command.status();
    let counts = command.counts();
    let expires = command.requested
        + Duration::from_secs(command.timeout_seconds.unsigned_abs() + command.execution_timeout);
    CommandOut {
        command_id: command.id.clone(),
        document_name: command.document_name.clone(),
        document_version: command.document_version.clone(),
        comment: command.comment.clone(),
        expires_after: timefmt::epoch_seconds(expires),
        parameters: command.parameters.clone(),
        instance_ids: command.instance_ids.clone(),
        targets: command.targets.clone(),
        requested_date_time: timefmt::epoch_seconds(command.requested),
        status,
        status_details,
        output_s3_region: command.output_s3_region.clone(),
        output_s3_bucket_name: command.output_s3_bucket_name.clone(),
        output_s3_key_prefix: command.output_s3_key_prefix.clone(),
        max_concurrency: command.max_concurrency.clone(),
        max_errors: command.max_errors.clone(),
        target_count: counts.target,
        completed_count: counts.completed,
        error_count: counts.errors,
        delivery_timed_out_count: counts.delivery_timed_out,
        service_role: command.service_role.clone(),
        notification_config: command.notification_config.clone(),
        cloud_watch_output_config: command.cloud_watch_output_config.clone(),
        timeout_seconds: command.timeout_seconds,
    }
}

/// Checks the length constraint of a command id.
pub(crate) fn check_command_id(id: &str) -> Result<(), ApiError> {
    if id.len() != 36 {
        return Err(ApiError::validation(
            "commandId",
            "Member must have length 36",
        ));
    }
    Ok(())
}

/// Checks the count and pattern of instance ids.
pub(crate) fn check_instance_ids(field: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.len() > MAX_INSTANCE_IDS {
        return Err(ApiError::validation(
            field,
            "Member must have length less than or equal to 50",
        ));
    }
    if ids.iter().any(|id| !is_instance_id(id)) {
        return Err(ApiError::validation(
            field,
            "Member must satisfy regular expression pattern: (^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)",
        ));
    }
    Ok(())
}

fn check_document_name(name: &str) -> Result<(), ApiError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_-.:/".contains(c);
    if !(3..=128).contains(&name.len()) || !name.chars().all(valid_char) {
        return Err(ApiError::validation(
            "documentName",
            "Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\\-.:/]{3,128}$",
        ));
    }
    Ok(())
}

fn check_targets(targets: &[Target]) -> Result<(), ApiError> {
    if targets.len() > 5 {
        return Err(ApiError::validation(
            "targets",
            "Member must have length less than or equal to 5",
        ));
    }
    for target in targets {
        if !(1..=163).contains(&target.key.len()) || target.values.len() > 50 {
            return Err(ApiError::validation(
                "targets",
                "Member must have a key of 1 to 163 characters and at most 50 values",
            ));
        }
    }
    Ok(())
}

/// Validates the document parameters and returns the execution timeout in seconds.
fn check_parameters(
    shared: &Shared,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<u64, ApiError> {
    let size: usize = parameters
        .iter()
        .map(|(k, v)| k.len() + v.iter().map(String::len).sum::<usize>())
        .sum();
    if size > shared.config.max_parameters_bytes {
        return Err(ApiError::client(
            "MaxDocumentSizeExceeded",
            format!(
                "the document with its parameters exceeds the size limit of {} bytes",
                shared.config.max_parameters_bytes
            ),
        ));
    }
    let invalid = |message: String| Err(ApiError::client("InvalidParameters", message));
    if let Some(name) = parameters.keys().find(|k| {
        !matches!(
            k.as_str(),
            "commands" | "workingDirectory" | "executionTimeout"
        )
    }) {
        return invalid(format!("parameter {name} is not defined by the document"));
    }
    if parameters.get("commands").is_none_or(Vec::is_empty) {
        return invalid("parameter commands is required and needs at least one value".into());
    }
    if let Some(dir) = parameters.get("workingDirectory")
        && (dir.len() > 1 || dir.first().is_some_and(|d| d.chars().count() > 4096))
    {
        return invalid(
            "parameter workingDirectory takes one value of at most 4096 characters".into(),
        );
    }
    let Some(timeout) = parameters.get("executionTimeout") else {
        return Ok(DEFAULT_EXECUTION_TIMEOUT);
    };
    let value = match timeout.as_slice() {
        [value] => value,
        _ => return invalid("parameter executionTimeout takes exactly one value".into()),
    };
    let seconds = value
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=172_800).contains(s) && !value.starts_with('0'))
        .ok_or_else(|| {
            ApiError::client(
                "InvalidParameters",
                format!(
                    "parameter executionTimeout value {value:?} does not match the allowed pattern"
                ),
            )
        })?;
    Ok(if EXECUTION_TIMEOUT_RANGE.contains(&seconds) {
        seconds
    } else {
        DEFAULT_EXECUTION_TIMEOUT
    })
}

/// Turns `InstanceIds` or `Targets` into instance indexes.
fn resolve_targets(
    shared: &Shared,
    ids: &[String],
    targets: &[Target],
) -> Result<Vec<usize>, ApiError> {
    match (ids.is_empty(), targets.is_empty()) {
        (true, true) => Err(ApiError::validation(
            "instanceIds",
            "InstanceIds or Targets must be given",
        )),
        (false, false) => Err(ApiError::validation(
            "targets",
            "InstanceIds and Targets are exclusive",
        )),
        (false, true) => {
            let mut seen = HashSet::new();
            let mut indexes = Vec::with_capacity(ids.len());
            for id in ids {
                if !seen.insert(id.as_str()) {
                    return Err(ApiError::client(
                        "DuplicateInstanceId",
                        format!("instance {id} is listed twice"),
                    ));
                }
                let index = shared.instance_index.get(id).copied();
                let usable = index
                    .filter(|&i| shared.config.instances[i].ping_status != PingStatus::Inactive);
                indexes.push(usable.ok_or_else(|| {
                    ApiError::client(
                        "InvalidInstanceId",
                        format!("instance {id} is not a valid managed instance"),
                    )
                })?);
            }
            Ok(indexes)
        }
        (true, false) => resolve_target_keys(shared, targets),
    }
}

fn resolve_target_keys(shared: &Shared, targets: &[Target]) -> Result<Vec<usize>, ApiError> {
    let mut chosen: Option<HashSet<usize>> = None;
    for target in targets {
        let matching: HashSet<usize> = if target.key == "InstanceIds" {
            target
                .values
                .iter()
                .filter_map(|id| shared.instance_index.get(id).copied())
                .collect()
        } else if let Some(tag) = target.key.strip_prefix("tag:") {
            let instances = shared.config.instances.iter().enumerate();
            instances
                .filter(|(_, inst)| {
                    inst.tag(tag)
                        .is_some_and(|v| target.values.iter().any(|t| t == v))
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            return Err(ApiError::client(
                "InvalidParameters",
                format!("target key {} is not supported by the emulator", target.key),
            ));
        };
        chosen = Some(match chosen {
            Some(previous) => previous.intersection(&matching).copied().collect(),
            None => matching,
        });
    }
    let mut indexes: Vec<usize> = chosen.unwrap_or_default().into_iter().collect();
    indexes.retain(|&i| shared.config.instances[i].ping_status != PingStatus::Inactive);
    indexes.sort_unstable();
    Ok(indexes)
}

fn check_platforms(
    shared: &Shared,
    document: Document,
    instances: &[usize],
) -> Result<(), ApiError> {
    if document != Document::Shell {
        return Ok(());
    }
    let windows = instances
        .iter()
        .map(|&i| &shared.config.instances[i])
        .find(|inst| inst.platform_type == PlatformType::Windows);
    match windows {
        Some(inst) => Err(ApiError::client(
            "UnsupportedPlatformType",
            format!(
                "document AWS-RunShellScript does not support the platform of {}",
                inst.id
            ),
        )),
        None => Ok(()),
    }
}

/// A random version-4 UUID, the shape of a `CommandId` and of request ids.
pub(crate) fn new_uuid() -> String {
    let bits = fastrand::u128(..);
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_version_four_uuids() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
    }

    #[test]
    fn fifty_one_instance_ids_break_the_length_constraint() {
        let ids: Vec<String> = (1..=51).map(|n| format!("i-{n:017x}")).collect();
        let err = check_instance_ids("instanceIds", &ids).unwrap_err();
        assert_eq!(err.code, "ValidationException");
        assert!(check_instance_ids("instanceIds", &ids[..50]).is_ok());
    }
}
