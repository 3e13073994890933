//! The awsJson1_1 wire shapes of the operations the emulator serves, and its errors.
//!
//! Field names are the service's. Request members are all optional here so that
//! a missing required member becomes the service's `ValidationException` rather
//! than a parse failure; responses omit what the service omits and send the
//! empty strings and objects the service sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The content type of every request and response.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The prefix of `X-Amz-Target`.
pub(crate) const TARGET_PREFIX: &str = "AmazonSSM.";

/// The operations the emulator implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Operation {
    SendCommand,
    GetCommandInvocation,
    ListCommandInvocations,
    ListCommands,
    CancelCommand,
    DescribeInstanceInformation,
}

impl Operation {
    /// Every implemented operation.
    pub(crate) const ALL: [Operation; 6] = [
        Operation::SendCommand,
        Operation::GetCommandInvocation,
        Operation::ListCommandInvocations,
        Operation::ListCommands,
        Operation::CancelCommand,
        Operation::DescribeInstanceInformation,
    ];

    /// The operation name as in `X-Amz-Target`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::SendCommand => "SendCommand",
            Operation::GetCommandInvocation => "GetCommandInvocation",
            Operation::ListCommandInvocations => "ListCommandInvocations",
            Operation::ListCommands => "ListCommands",
            Operation::CancelCommand => "CancelCommand",
            Operation::DescribeInstanceInformation => "DescribeInstanceInformation",
        }
    }

    /// Finds an operation by name.
    pub(crate) fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// An error answered in the service's JSON error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: u16,
    /// The bare shape name sent as `__type`.
    pub(crate) code: &'static str,
    /// Human-readable text sent as `message`.
    pub(crate) message: String,
}

impl ApiError {
    /// A client error (HTTP 400).
    pub(crate) fn client(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            message: message.into(),
        }
    }

    /// The service's answer to a request that breaks a modelled constraint.
    pub(crate) fn validation(field: &str, constraint: &str) -> ApiError {
        ApiError::client(
            "ValidationException",
            format!(
                "1 validation error detected: Value at '{field}' failed to satisfy constraint: \
                 {constraint}"
            ),
        )
    }

    /// The answer to a missing required member.
    pub(crate) fn missing(field: &str) -> ApiError {
        ApiError::validation(field, "Member must not be null")
    }

    /// The answer to a body that is not JSON of the expected shape.
    pub(crate) fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::client("SerializationException", message)
    }

    /// The answer to an unknown `X-Amz-Target`.
    pub(crate) fn unknown_operation(message: impl Into<String>) -> ApiError {
        ApiError::client("UnknownOperationException", message)
    }

    /// `ThrottlingException: Rate exceeded`, HTTP 400 as the service sends it.
    pub(crate) fn throttling() -> ApiError {
        ApiError::client("ThrottlingException", "Rate exceeded")
    }

    /// `InternalServerError`, HTTP 500.
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            code: "InternalServerError",
            message: message.into(),
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"__type": self.code, "message": self.message}))
            .unwrap_or_default()
    }
}

/// A `Target` of SendCommand.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Target {
    #[serde(default)]
    pub(crate) key: String,
    #[serde(default)]
    pub(crate) values: Vec<String>,
}

/// `NotificationConfig`, echoed back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NotificationConfig {
    #[serde(default)]
    pub(crate) notification_arn: String,
    #[serde(default)]
    pub(crate) notification_events: Vec<String>,
    #[serde(default)]
    pub(crate) notification_type: String,
}

/// `CloudWatchOutputConfig`, echoed back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CloudWatchOutputConfig {
    #[serde(default)]
    pub(crate) cloud_watch_log_group_name: String,
    #[serde(default)]
    pub(crate) cloud_watch_output_enabled: bool,
}

/// A `{key, value}` filter of the command listing operations.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct CommandFilter {
    pub(crate) key: Option<String>,
    pub(crate) value: Option<String>,
}

/// A `{Key, Values}` filter of DescribeInstanceInformation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceFilter {
    pub(crate) key: Option<String>,
    pub(crate) values: Option<Vec<String>>,
}

/// A legacy `{key, valueSet}` filter of DescribeInstanceInformation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LegacyInstanceFilter {
    pub(crate) key: Option<String>,
    pub(crate) value_set: Option<Vec<String>>,
}

/// SendCommand input.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SendCommandInput {
    pub(crate) instance_ids: Option<Vec<String>>,
    pub(crate) targets: Option<Vec<Target>>,
    pub(crate) document_name: Option<String>,
    pub(crate) document_version: Option<String>,
    pub(crate) timeout_seconds: Option<i64>,
    pub(crate) comment: Option<String>,
    pub(crate) parameters: Option<BTreeMap<String, Vec<String>>>,
    pub(crate) output_s3_region: Option<String>,
    pub(crate) output_s3_bucket_name: Option<String>,
    pub(crate) output_s3_key_prefix: Option<String>,
    pub(crate) max_concurrency: Option<String>,
    pub(crate) max_errors: Option<String>,
    pub(crate) service_role_arn: Option<String>,
    pub(crate) notification_config: Option<NotificationConfig>,
    pub(crate) cloud_watch_output_config: Option<CloudWatchOutputConfig>,
}

/// GetCommandInvocation input.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetCommandInvocationInput {
    pub(crate) command_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) plugin_name: Option<String>,
}

/// ListCommandInvocations and ListCommands input; `Details` only applies to the first.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListInput {
    pub(crate) command_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) max_results: Option<i64>,
    pub(crate) next_token: Option<String>,
    pub(crate) filters: Option<Vec<CommandFilter>>,
    pub(crate) details: Option<bool>,
}

/// CancelCommand input.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CancelCommandInput {
    pub(crate) command_id: Option<String>,
    pub(crate) instance_ids: Option<Vec<String>>,
}

/// DescribeInstanceInformation input.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeInstanceInformationInput {
    pub(crate) instance_information_filter_list: Option<Vec<LegacyInstanceFilter>>,
    pub(crate) filters: Option<Vec<InstanceFilter>>,
    pub(crate) max_results: Option<i64>,
    pub(crate) next_token: Option<String>,
}

/// The `Command` object of SendCommand and ListCommands.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CommandOut {
    pub(crate) command_id: String,
    pub(crate) document_name: String,
    pub(crate) document_version: String,
    pub(crate) comment: String,
    pub(crate) expires_after: f64,
    pub(crate) parameters: BTreeMap<String, Vec<String>>,
    pub(crate) instance_ids: Vec<String>,
    pub(crate) targets: Vec<Target>,
    pub(crate) requested_date_time: f64,
    pub(crate) status: &'static str,
    pub(crate) status_details: &'static str,
    pub(crate) output_s3_region: String,
    pub(crate) output_s3_bucket_name: String,
    pub(crate) output_s3_key_prefix: String,
    pub(crate) max_concurrency: String,
    pub(crate) max_errors: String,
    pub(crate) target_count: i32,
    pub(crate) completed_count: i32,
    pub(crate) error_count: i32,
    pub(crate) delivery_timed_out_count: i32,
    pub(crate) service_role: String,
    pub(crate) notification_config: NotificationConfig,
    pub(crate) cloud_watch_output_config: CloudWatchOutputConfig,
    pub(crate) timeout_seconds: i64,
}

/// GetCommandInvocation output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetCommandInvocationOut {
    pub(crate) command_id: String,
    pub(crate) instance_id: String,
    pub(crate) comment: String,
    pub(crate) document_name: String,
    pub(crate) document_version: String,
    pub(crate) plugin_name: &'static str,
    pub(crate) response_code: i32,
    pub(crate) execution_start_date_time: String,
    pub(crate) execution_elapsed_time: String,
    pub(crate) execution_end_date_time: String,
    pub(crate) status: &'static str,
    pub(crate) status_details: &'static str,
    pub(crate) standard_output_content: String,
    pub(crate) standard_output_url: String,
    pub(crate) standard_error_content: String,
    pub(crate) standard_error_url: String,
    pub(crate) cloud_watch_output_config: CloudWatchOutputConfig,
}

/// One `CommandInvocation` of ListCommandInvocations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CommandInvocationOut {
    pub(crate) command_id: String,
    pub(crate) instance_id: String,
    pub(crate) instance_name: String,
    pub(crate) comment: String,
    pub(crate) document_name: String,
    pub(crate) document_version: String,
    pub(crate) requested_date_time: f64,
    pub(crate) status: &'static str,
    pub(crate) status_details: &'static str,
    pub(crate) trace_output: String,
    pub(crate) standard_output_url: String,
    pub(crate) standard_error_url: String,
    pub(crate) command_plugins: Vec<CommandPluginOut>,
    pub(crate) service_role: String,
    pub(crate) notification_config: NotificationConfig,
    pub(crate) cloud_watch_output_config: CloudWatchOutputConfig,
}

/// One `CommandPlugin`, present only when `Details` is true.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CommandPluginOut {
    pub(crate) name: &'static str,
    pub(crate) status: &'static str,
    pub(crate) status_details: &'static str,
    pub(crate) response_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_start_date_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_finish_date_time: Option<f64>,
    pub(crate) output: String,
    pub(crate) standard_output_url: String,
    pub(crate) standard_error_url: String,
    pub(crate) output_s3_region: String,
    pub(crate) output_s3_bucket_name: String,
    pub(crate) output_s3_key_prefix: String,
}

/// One `InstanceInformation` of DescribeInstanceInformation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InstanceInformationOut {
    pub(crate) instance_id: String,
    pub(crate) ping_status: &'static str,
    pub(crate) last_ping_date_time: f64,
    pub(crate) agent_version: String,
    pub(crate) is_latest_version: bool,
    pub(crate) platform_type: &'static str,
    pub(crate) platform_name: String,
    pub(crate) platform_version: String,
    pub(crate) resource_type: &'static str,
    #[serde(rename = "IPAddress")]
    pub(crate) ip_address: String,
    pub(crate) computer_name: String,
    pub(crate) source_id: String,
    pub(crate) source_type: &'static str,
}

/// Parses a request body, treating an empty body as `{}` like the service.
pub(crate) fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "unexpected shape"
        };
        ApiError::serialization(format!("{what} at line {} column {}", e.line(), e.column()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_use_the_bare_shape_name() {
        let body = ApiError::throttling().body();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["__type"], "ThrottlingException");
        assert_eq!(json["message"], "Rate exceeded");
    }

    #[test]
    fn ill_typed_members_are_serialization_errors() {
        let err = parse::<GetCommandInvocationInput>(br#"{"CommandId": 5}"#).unwrap_err();
        assert_eq!(err.code, "SerializationException");
        let err = parse::<GetCommandInvocationInput>(b"{\"CommandId\":").unwrap_err();
        assert_eq!(err.code, "SerializationException");
        assert!(parse::<GetCommandInvocationInput>(b"").is_ok());
    }

    #[test]
    fn output_field_names_match_the_service() {
        let out = InstanceInformationOut {
            instance_id: "i-1".into(),
            ping_status: "Online",
            last_ping_date_time: 1.5,
            agent_version: "3.0.0".into(),
            is_latest_version: false,
            platform_type: "Linux",
            platform_name: String::new(),
            platform_version: String::new(),
            resource_type: "EC2Instance",
            ip_address: "10.0.0.1".into(),
            computer_name: String::new(),
            source_id: String::new(),
            source_type: "AWS::EC2::Instance",
        };
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["IPAddress"], "10.0.0.1");
        assert_eq!(json["LastPingDateTime"], 1.5);
    }
}
