//! The paginated listings: ListCommandInvocations, ListCommands and
//! DescribeInstanceInformation.
//!
//! Each page is produced by walking an index from the position named by the
//! `NextToken` and stopping after one item more than the page holds, so the
//! work per call is proportional to the page (plus whatever filters skip).
//! Tokens are opaque to clients; their text is `<kind>:<position>`.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Instance;
use crate::emulator::Shared;
use crate::ops::{check_command_id, check_instance_ids, command_out, to_body};
use crate::protocol::{
    ApiError, CommandFilter, CommandInvocationOut, CommandPluginOut,
    DescribeInstanceInformationInput, InstanceFilter, InstanceInformationOut, ListInput,
};
use crate::store::{CommandRecord, Invocation};
use crate::timefmt;

/// A filter of the command listings, parsed.
enum Filter {
    After(SystemTime),
    Before(SystemTime),
    Status(String),
    Stage(bool),
    Document(String),
}

impl Filter {
    fn command_matches(&self, command: &CommandRecord) -> bool {
        match self {
            Filter::After(t) => command.requested >= *t,
            Filter::Before(t) => command.requested <= *t,
            Filter::Status(s) => command.status().0 == s || command.status().1 == s,
            Filter::Stage(complete) => command.is_finished() == *complete,
            Filter::Document(name) => command.document_name == *name,
        }
    }

    fn invocation_matches(&self, command: &CommandRecord, inv: &Invocation) -> bool {
        match self {
            Filter::Status(s) => inv.state.status() == s || inv.state.details() == s,
            other => other.command_matches(command),
        }
    }
}

fn parse_filters(
    filters: Option<Vec<CommandFilter>>,
    invocations: bool,
) -> Result<Vec<Filter>, ApiError> {
    let filters = filters.unwrap_or_default();
    if filters.len() > 5 {
        return Err(ApiError::validation(
            "filters",
            "Member must have length less than or equal to 5",
        ));
    }
    let mut parsed = Vec::with_capacity(filters.len());
    for filter in filters {
        let key = filter
            .key
            .ok_or_else(|| ApiError::missing("filters.member.key"))?;
        let value = filter
            .value
            .ok_or_else(|| ApiError::missing("filters.member.value"))?;
        let bad_value = || {
            ApiError::validation(
                "filters.member.value",
                "Member must be a valid value for its key",
            )
        };
        let time = |v: &str| timefmt::parse_iso8601(v).ok_or_else(bad_value);
        parsed.push(match key.as_str() {
            "InvokedAfter" => Filter::After(time(&value)?),
            "InvokedBefore" => Filter::Before(time(&value)?),
            "DocumentName" => Filter::Document(value),
            "Status" => Filter::Status(value),
            "ExecutionStage" if !invocations => match value.as_str() {
                "Executing" => Filter::Stage(false),
                "Complete" => Filter::Stage(true),
                _ => return Err(bad_value()),
            },
            _ => {
                return Err(ApiError::client(
                    "InvalidFilterKey",
                    format!("filter key {key} is not valid"),
                ));
            }
        });
    }
    Ok(parsed)
}

fn page_size(
    max_results: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<usize, ApiError> {
    let size = max_results.unwrap_or(default);
    if !range.contains(&size) {
        return Err(ApiError::validation(
            "maxResults",
            &format!(
                "Member must have value between {} and {}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(usize::try_from(size).unwrap_or(1))
}

fn invalid_token() -> ApiError {
    ApiError::client("InvalidNextToken", "the specified token is not valid")
}

/// Reads a token `<kind>:<a>[.<b>]`.
fn parse_token(token: Option<&str>, kind: &str) -> Result<Option<(u64, usize)>, ApiError> {
    let Some(token) = token else { return Ok(None) };
    let rest = token
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(invalid_token)?;
    let (a, b) = rest.split_once('.').unwrap_or((rest, "0"));
    Ok(Some((
        a.parse().map_err(|_| invalid_token())?,
        b.parse().map_err(|_| invalid_token())?,
    )))
}

/// ListCommandInvocations: newest command first, invocations in request order.
pub(crate) fn list_command_invocations(
    shared: &Shared,
    input: ListInput,
) -> Result<Vec<u8>, ApiError> {
    let limit = page_size(input.max_results, 1..=50, 50)?;
    let filters = parse_filters(input.filters, true)?;
    let (start_seq, start_index) =
        parse_token(input.next_token.as_deref(), "inv")?.unwrap_or((u64::MAX, 0));
    let instance = scope_instance(shared, input.instance_id.as_deref())?;
    if let Some(id) = &input.command_id {
        check_command_id(id)?;
    }
    let details = input.details.unwrap_or(false);

    let store = shared.store();
    let now = Instant::now();
    let commands = commands_in_scope(
        shared,
        &store,
        input.command_id.as_deref(),
        instance,
        start_seq,
    );
    let mut page = Vec::with_capacity(limit);
    let mut next = None;
    'walk: for command in commands.filter(|c| now >= c.visible_at) {
        for (index, inv) in command.invocations.iter().enumerate() {
            let before_token = command.seq == start_seq && index < start_index;
            let wanted = instance.is_none_or(|i| inv.instance == i);
            if before_token
                || !wanted
                || !filters.iter().all(|f| f.invocation_matches(command, inv))
            {
                continue;
            }
            if page.len() == limit {
                next = Some(format!("inv:{}.{index}", command.seq));
                break 'walk;
            }
            page.push(invocation_out(shared, command, inv, details));
        }
    }
    to_body(&ListPage::new("CommandInvocations", page, next))
}

/// ListCommands: newest first.
pub(crate) fn list_commands(shared: &Shared, input: ListInput) -> Result<Vec<u8>, ApiError> {
    let limit = page_size(input.max_results, 1..=50, 50)?;
    let filters = parse_filters(input.filters, false)?;
    let start_seq =
        parse_token(input.next_token.as_deref(), "cmd")?.map_or(u64::MAX, |(seq, _)| seq);
    let instance = scope_instance(shared, input.instance_id.as_deref())?;
    if let Some(id) = &input.command_id {
        check_command_id(id)?;
    }

    let store = shared.store();
    let commands = commands_in_scope(
        shared,
        &store,
        input.command_id.as_deref(),
        instance,
        start_seq,
    );
    let mut page = Vec::with_capacity(limit);
    let mut next = None;
    for command in commands.filter(|c| filters.iter().all(|f| f.command_matches(c))) {
        if page.len() == limit {
            next = Some(format!("cmd:{}", command.seq));
            break;
        }
        page.push(command_out(command));
    }
    to_body(&ListPage::new("Commands", page, next))
}

/// The instance index named by an `InstanceId` filter; out of range for an unknown one.
fn scope_instance(shared: &Shared, instance_id: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(id) = instance_id else {
        return Ok(None);
    };
    check_instance_ids("instanceId", &[id.to_owned()])?;
    Ok(Some(
        shared.instance_index.get(id).copied().unwrap_or(usize::MAX),
    ))
}

/// Commands numbered at most `start_seq`, newest first, narrowed by command or instance.
fn commands_in_scope<'a>(
    shared: &Shared,
    store: &'a crate::store::Store,
    command_id: Option<&str>,
    instance: Option<usize>,
    start_seq: u64,
) -> Box<dyn Iterator<Item = &'a CommandRecord> + 'a> {
    let before = start_seq.saturating_add(1);
    if let Some(id) = command_id {
        let one = store.by_id(id).filter(|c| c.seq < before);
        return Box::new(one.into_iter());
    }
    match instance {
        Some(index) if index < shared.config.instances.len() => {
            Box::new(store.newest_first_on(index, before))
        }
        Some(_) => Box::new(std::iter::empty()),
        None => Box::new(store.newest_first(before)),
    }
}

fn invocation_out(
    shared: &Shared,
    command: &CommandRecord,
    inv: &Invocation,
    details: bool,
) -> CommandInvocationOut {
    let instance = &shared.config.instances[inv.instance];
    let plugins = if details {
        vec![plugin_out(command, inv)]
    } else {
        Vec::new()
    };
    CommandInvocationOut {
        command_id: command.id.clone(),
        instance_id: instance.id.clone(),
        instance_name: instance.computer_name.clone(),
        comment: command.comment.clone(),
        document_name: command.document_name.clone(),
        document_version: command.document_version.clone(),
        requested_date_time: timefmt::epoch_seconds(command.requested),
        status: inv.state.status(),
        status_details: inv.state.details(),
        trace_output: String::new(),
        standard_output_url: String::new(),
        standard_error_url: String::new(),
        command_plugins: plugins,
        service_role: command.service_role.clone(),
        notification_config: command.notification_config.clone(),
        cloud_watch_output_config: command.cloud_watch_output_config.clone(),
    }
}

fn plugin_out(command: &CommandRecord, inv: &Invocation) -> CommandPluginOut {
    let started = inv.started.map(timefmt::epoch_seconds);
    CommandPluginOut {
        name: command.document.plugin(),
        status: inv.state.plugin_status(),
        status_details: inv.state.details(),
        response_code: inv.response_code,
        response_start_date_time: started,
        response_finish_date_time: started.and(inv.ended.map(timefmt::epoch_seconds)),
        output: if inv.state.is_terminal() {
            inv.plugin_output.clone()
        } else {
            String::new()
        },
        standard_output_url: String::new(),
        standard_error_url: String::new(),
        output_s3_region: command.output_s3_region.clone(),
        output_s3_bucket_name: command.output_s3_bucket_name.clone(),
        output_s3_key_prefix: command.output_s3_key_prefix.clone(),
    }
}

/// A page of results under the operation's list name, with an optional token.
#[derive(serde::Serialize)]
struct ListPage<T: serde::Serialize> {
    #[serde(flatten)]
    items: std::collections::BTreeMap<&'static str, Vec<T>>,
    #[serde(rename = "NextToken", skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl<T: serde::Serialize> ListPage<T> {
    fn new(name: &'static str, items: Vec<T>, next_token: Option<String>) -> Self {
        ListPage {
            items: [(name, items)].into(),
            next_token,
        }
    }
}

/// How one DescribeInstanceInformation filter selects instances.
enum InstanceTest {
    Ids(HashSet<String>),
    Values(InstanceField, HashSet<String>),
    Tag(String, HashSet<String>),
    TagKey(HashSet<String>),
    Nothing,
}

#[derive(Clone, Copy)]
enum InstanceField {
    PingStatus,
    Platform,
    AgentVersion,
    ResourceType,
    SourceType,
}

impl InstanceTest {
    fn matches(&self, instance: &Instance) -> bool {
        match self {
            InstanceTest::Ids(ids) => ids.contains(&instance.id),
            InstanceTest::Values(field, values) => values.contains(match field {
                InstanceField::PingStatus => instance.ping_status.as_str(),
                InstanceField::Platform => instance.platform_type.as_str(),
                InstanceField::AgentVersion => instance.agent_version.as_str(),
                InstanceField::ResourceType => "EC2Instance",
                InstanceField::SourceType => "AWS::EC2::Instance",
            }),
            InstanceTest::Tag(key, values) => instance.tag(key).is_some_and(|v| values.contains(v)),
            InstanceTest::TagKey(keys) => keys.iter().any(|k| instance.tag(k).is_some()),
            InstanceTest::Nothing => false,
        }
    }
}

fn instance_test(key: &str, values: Vec<String>, legacy: bool) -> Result<InstanceTest, ApiError> {
    let bad_value =
        |message: String| ApiError::client("InvalidInstanceInformationFilterValue", message);
    if values.is_empty() || values.len() > 100 {
        return Err(bad_value(format!("filter {key} needs 1 to 100 values")));
    }
    let set: HashSet<String> = values.into_iter().collect();
    let field = |f| Ok(InstanceTest::Values(f, set.clone()));
    match key {
        "InstanceIds" | "SourceIds" => Ok(InstanceTest::Ids(set)),
        "PingStatus" => field(InstanceField::PingStatus),
        "PlatformTypes" => field(InstanceField::Platform),
        "AgentVersion" => field(InstanceField::AgentVersion),
        "ResourceType" => field(InstanceField::ResourceType),
        "SourceTypes" if !legacy => field(InstanceField::SourceType),
        "ActivationIds" | "IamRole" | "AssociationStatus" => Ok(InstanceTest::Nothing),
        "tag-key" if !legacy => Ok(InstanceTest::TagKey(set)),
        _ => match key.strip_prefix("tag:") {
            Some(tag) if !legacy && !tag.is_empty() => Ok(InstanceTest::Tag(tag.to_owned(), set)),
            _ => Err(ApiError::client(
                "InvalidFilterKey",
                format!("filter key {key} is not valid"),
            )),
        },
    }
}

/// DescribeInstanceInformation: instances in configuration order.
pub(crate) fn describe_instance_information(
    shared: &Shared,
    input: DescribeInstanceInformationInput,
) -> Result<Vec<u8>, ApiError> {
    let limit = page_size(input.max_results, 5..=50, 10)?;
    let start = parse_token(input.next_token.as_deref(), "ins")?.map_or(0, |(i, _)| i);
    let start = usize::try_from(start).map_err(|_| invalid_token())?;
    let tests = instance_tests(input.filters, input.instance_information_filter_list)?;

    // An InstanceIds filter turns the walk into lookups.
    let by_id = tests.iter().find_map(|t| match t {
        InstanceTest::Ids(ids) => Some(ids),
        _ => None,
    });
    let candidates: Box<dyn Iterator<Item = usize>> = match by_id {
        Some(ids) => {
            let mut indexes: Vec<usize> = ids
                .iter()
                .filter_map(|id| shared.instance_index.get(id).copied())
                .collect();
            indexes.sort_unstable();
            Box::new(indexes.into_iter().filter(move |&i| i >= start))
        }
        None => Box::new(start..shared.config.instances.len()),
    };

    let now = SystemTime::now();
    let mut page = Vec::with_capacity(limit);
    let mut next = None;
    for index in candidates {
        let instance = &shared.config.instances[index];
        if !tests.iter().all(|t| t.matches(instance)) {
            continue;
        }
        if page.len() == limit {
            next = Some(format!("ins:{index}"));
            break;
        }
        page.push(instance_out(instance, now));
    }
    to_body(&ListPage::new("InstanceInformationList", page, next))
}

fn instance_tests(
    filters: Option<Vec<InstanceFilter>>,
    legacy: Option<Vec<crate::protocol::LegacyInstanceFilter>>,
) -> Result<Vec<InstanceTest>, ApiError> {
    let (filters, legacy) = (filters.unwrap_or_default(), legacy.unwrap_or_default());
    if !filters.is_empty() && !legacy.is_empty() {
        return Err(ApiError::client(
            "InvalidInstanceInformationFilterValue",
            "InstanceInformationFilterList and Filters cannot be used together",
        ));
    }
    let mut tests = Vec::new();
    for filter in filters {
        let key = filter
            .key
            .ok_or_else(|| ApiError::missing("filters.member.key"))?;
        tests.push(instance_test(
            &key,
            filter.values.unwrap_or_default(),
            false,
        )?);
    }
    for filter in legacy {
        let key = filter
            .key
            .ok_or_else(|| ApiError::missing("instanceInformationFilterList.member.key"))?;
        tests.push(instance_test(
            &key,
            filter.value_set.unwrap_or_default(),
            true,
        )?);
    }
    Ok(tests)
}

fn instance_out(instance: &Instance, now: SystemTime) -> InstanceInformationOut {
    // Online agents pinged recently; others last pinged an hour ago.
    let since = if instance.ping_status == crate::config::PingStatus::Online {
        30
    } else {
        3600
    };
    InstanceInformationOut {
        instance_id: instance.id.clone(),
        ping_status: instance.ping_status.as_str(),
        last_ping_date_time: timefmt::epoch_seconds(now - Duration::from_secs(since)),
        agent_version: instance.agent_version.clone(),
        is_latest_version: false,
        platform_type: instance.platform_type.as_str(),
        platform_name: instance.platform_name.clone(),
        platform_version: instance.platform_version.clone(),
        resource_type: "EC2Instance",
        ip_address: instance.ip_address.clone(),
        computer_name: instance.computer_name.clone(),
        source_id: instance.id.clone(),
        source_type: "AWS::EC2::Instance",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_token(Some("inv:12.3"), "inv").unwrap(), Some((12, 3)));
        assert_eq!(parse_token(Some("cmd:7"), "cmd").unwrap(), Some((7, 0)));
        assert_eq!(parse_token(None, "cmd").unwrap(), None);
        assert_eq!(
            parse_token(Some("cmd:7"), "inv").unwrap_err().code,
            "InvalidNextToken"
        );
        assert_eq!(
            parse_token(Some("inv:x"), "inv").unwrap_err().code,
            "InvalidNextToken"
        );
    }

    #[test]
    fn unknown_filter_keys_are_rejected() {
        let filters = vec![CommandFilter {
            key: Some("Colour".into()),
            value: Some("red".into()),
        }];
        assert!(
            matches!(parse_filters(Some(filters), true), Err(e) if e.code == "InvalidFilterKey")
        );
        let stage = vec![CommandFilter {
            key: Some("ExecutionStage".into()),
            value: Some("Complete".into()),
        }];
        assert!(parse_filters(Some(stage.clone()), false).is_ok());
        assert!(parse_filters(Some(stage), true).is_err());
    }
}
