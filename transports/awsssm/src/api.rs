//! The SSM JSON shapes the transport sends and reads (awsJson1.1 protocol).
//!
//! Only the members the transport uses are modelled; everything else in a
//! response is ignored. Error responses are classified here into throttling,
//! transient, denied and client errors, which drives every retry decision.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;

/// `X-Amz-Target` of SendCommand.
pub const SEND_COMMAND: &str = "AmazonSSM.SendCommand";
/// `X-Amz-Target` of GetCommandInvocation.
pub const GET_COMMAND_INVOCATION: &str = "AmazonSSM.GetCommandInvocation";
/// `X-Amz-Target` of ListCommandInvocations.
pub const LIST_COMMAND_INVOCATIONS: &str = "AmazonSSM.ListCommandInvocations";
/// `X-Amz-Target` of CancelCommand.
pub const CANCEL_COMMAND: &str = "AmazonSSM.CancelCommand";
/// `X-Amz-Target` of DescribeInstanceInformation.
pub const DESCRIBE_INSTANCE_INFORMATION: &str = "AmazonSSM.DescribeInstanceInformation";

/// Every action the transport signs, as declared in its description.
pub const ACTIONS: [&str; 5] = [
    SEND_COMMAND,
    GET_COMMAND_INVOCATION,
    LIST_COMMAND_INVOCATIONS,
    CANCEL_COMMAND,
    DESCRIBE_INSTANCE_INFORMATION,
];

/// The document for shell scripts on Linux and macOS.
pub const SHELL_DOCUMENT: &str = "AWS-RunShellScript";
/// The document for PowerShell scripts on Windows.
pub const POWERSHELL_DOCUMENT: &str = "AWS-RunPowerShellScript";

/// A SendCommand request for one instance and one script.
#[derive(Debug, Clone)]
pub struct SendCommand<'a> {
    /// The instance to run on.
    pub instance_id: &'a str,
    /// The document, which takes AWS-RunShellScript's parameters.
    pub document: &'a str,
    /// The script, one `commands` entry.
    pub script: &'a str,
    /// The document's `executionTimeout`, in seconds.
    pub execution_timeout: u64,
    /// `TimeoutSeconds`, the delivery timeout.
    pub delivery_timeout: u64,
    /// The document's `workingDirectory`.
    pub working_directory: Option<&'a str>,
    /// `Comment`, carrying the token that finds the command again.
    pub comment: &'a str,
}

impl SendCommand<'_> {
    /// The request body.
    pub fn body(&self) -> Value {
        let mut parameters = json!({
            "commands": [self.script],
            "executionTimeout": [self.execution_timeout.clamp(5, 172_800).to_string()],
        });
        if let Some(dir) = self.working_directory {
            parameters["workingDirectory"] = json!([dir]);
        }
        json!({
            "InstanceIds": [self.instance_id],
            "DocumentName": self.document,
            "TimeoutSeconds": self.delivery_timeout.clamp(30, 2_592_000),
            "Comment": self.comment,
            "Parameters": parameters,
        })
    }
}

/// The CommandId from a SendCommand response.
pub fn command_id(response: &Value) -> Result<String, Error> {
    response
        .pointer("/Command/CommandId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Protocol("SendCommand answered without a CommandId".into()))
}

/// A GetCommandInvocation request body.
pub fn get_command_invocation(command_id: &str, instance_id: &str) -> Value {
    json!({ "CommandId": command_id, "InstanceId": instance_id })
}

/// A CancelCommand request body for one instance.
pub fn cancel_command(command_id: &str, instance_id: &str) -> Value {
    json!({ "CommandId": command_id, "InstanceIds": [instance_id] })
}

/// A ListCommandInvocations request body: the instance's invocations since
/// `after` (ISO 8601), one page.
pub fn list_command_invocations(
    instance_id: &str,
    after: Option<&str>,
    next_token: Option<&str>,
) -> Value {
    let mut body = json!({ "InstanceId": instance_id, "MaxResults": 50 });
    if let Some(after) = after {
        body["Filters"] = json!([{ "key": "InvokedAfter", "value": after }]);
    }
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    body
}

/// A DescribeInstanceInformation request body with at most one filter.
pub fn describe_instance_information(
    filter: Option<(&str, &str)>,
    next_token: Option<&str>,
) -> Value {
    let mut body = json!({ "MaxResults": 50 });
    if let Some((key, value)) = filter {
        body["Filters"] = json!([{ "Key": key, "Values": [value] }]);
    }
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    body
}

/// The state of one command invocation, from GetCommandInvocation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Invocation {
    /// `Status`: Pending, InProgress, Delayed, Success, Cancelled, TimedOut,
    /// Failed or Cancelling.
    pub status: String,
    /// `StatusDetails`, such as `DeliveryTimedOut` or `Undeliverable`.
    pub status_details: String,
    /// Exit status; -1 while the command has not finished.
    pub response_code: i64,
    /// The first 24,000 characters of standard output.
    pub standard_output_content: String,
    /// The first 8,000 characters of standard error.
    pub standard_error_content: String,
    /// When the command ended on the instance, ISO 8601.
    pub execution_end_date_time: String,
}

/// What a polled invocation says about its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not finished yet.
    Running,
    /// Ran to completion with exit status 0.
    Success,
    /// Ran and returned a non-zero exit status, or failed to run.
    Failed,
    /// Stopped by the instance's execution timeout.
    ExecutionTimedOut,
    /// SSM could not deliver it within the delivery timeout.
    DeliveryTimedOut,
    /// The instance cannot receive commands (offline or gone).
    Undeliverable,
    /// Cancelled, by us or by someone else.
    Cancelled,
    /// The instance was terminated while the command ran.
    Terminated,
    /// The document does not fit the instance's platform.
    InvalidPlatform,
    /// The instance's role may not run the document.
    AccessDenied,
}

impl Invocation {
    /// Parse a GetCommandInvocation response.
    pub fn parse(response: &Value) -> Result<Invocation, Error> {
        Invocation::deserialize(response).map_err(|e| {
            Error::Protocol(format!("GetCommandInvocation answered unexpectedly: {e}"))
        })
    }

    /// The invocation's phase, from `StatusDetails` first, then `Status`.
    pub fn phase(&self) -> Phase {
        let details = self.status_details.replace(' ', "");
        match details.as_str() {
            "DeliveryTimedOut" => return Phase::DeliveryTimedOut,
            "ExecutionTimedOut" => return Phase::ExecutionTimedOut,
            "Undeliverable" => return Phase::Undeliverable,
            "Terminated" => return Phase::Terminated,
            "InvalidPlatform" => return Phase::InvalidPlatform,
            "AccessDenied" => return Phase::AccessDenied,
            _ => {}
        }
        match self.status.as_str() {
            "Success" => Phase::Success,
            "Failed" => Phase::Failed,
            "TimedOut" => Phase::ExecutionTimedOut,
            "Cancelled" => Phase::Cancelled,
            _ => Phase::Running,
        }
    }
}

/// One entry of a ListCommandInvocations page.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Listed {
    /// The command.
    pub command_id: String,
    /// The comment it was sent with.
    pub comment: String,
}

/// A ListCommandInvocations page: its entries and the next page's token.
pub fn parse_listed(response: &Value) -> Result<(Vec<Listed>, Option<String>), Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        #[serde(default)]
        command_invocations: Vec<Listed>,
        next_token: Option<String>,
    }
    let page = Page::deserialize(response).map_err(|e| {
        Error::Protocol(format!("ListCommandInvocations answered unexpectedly: {e}"))
    })?;
    Ok((
        page.command_invocations,
        page.next_token.filter(|t| !t.is_empty()),
    ))
}

/// A managed instance, from DescribeInstanceInformation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InstanceInfo {
    /// `i-…` or `mi-…`.
    pub instance_id: String,
    /// Online, ConnectionLost or Inactive.
    pub ping_status: String,
    /// Windows, Linux or MacOS.
    pub platform_type: String,
    /// Such as "Amazon Linux".
    pub platform_name: String,
    /// The address the agent reports.
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    /// The host name the agent reports.
    pub computer_name: String,
}

/// A DescribeInstanceInformation page: its instances and the next token.
pub fn parse_instances(response: &Value) -> Result<(Vec<InstanceInfo>, Option<String>), Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        #[serde(default)]
        instance_information_list: Vec<InstanceInfo>,
        next_token: Option<String>,
    }
    let page = Page::deserialize(response).map_err(|e| {
        Error::Protocol(format!(
            "DescribeInstanceInformation answered unexpectedly: {e}"
        ))
    })?;
    Ok((
        page.instance_information_list,
        page.next_token.filter(|t| !t.is_empty()),
    ))
}

/// An error answer from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// Error code, such as `ThrottlingException`; empty if none was given.
    pub code: String,
    /// The service's message.
    pub message: String,
}

/// How the transport treats an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The service refused to process the request for now: always safe to retry.
    Throttled,
    /// The service failed; it may or may not have processed the request.
    Transient,
    /// Credentials or permissions were refused: never retried.
    Denied,
    /// The request itself is wrong: retrying cannot help.
    Client,
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
];

const DENIED_CODES: &[&str] = &[
    "InvalidSignatureException",
    "UnrecognizedClientException",
    "AccessDeniedException",
    "AccessDenied",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AuthFailure",
    "NotAuthorized",
];

impl ServiceError {
    /// Parse an error answer: the code from the `x-amzn-errortype` header,
    /// then the body's `code`, then `__type`; the message from `message`,
    /// `Message` or `errorMessage`.
    pub fn parse(status: u16, error_type_header: Option<&str>, body: &[u8]) -> ServiceError {
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let code = error_type_header
            .map(str::to_string)
            .or_else(|| field("code"))
            .or_else(|| field("__type"))
            .map(|c| sanitize_code(&c))
            .unwrap_or_default();
        let message = field("message")
            .or_else(|| field("Message"))
            .or_else(|| field("errorMessage"))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        ServiceError {
            status,
            code,
            message,
        }
    }

    /// How to treat this error.
    pub fn class(&self) -> ErrorClass {
        if THROTTLING_CODES.contains(&self.code.as_str()) || self.status == 429 {
            ErrorClass::Throttled
        } else if DENIED_CODES.contains(&self.code.as_str()) || matches!(self.status, 401 | 403) {
            ErrorClass::Denied
        } else if self.status >= 500 {
            ErrorClass::Transient
        } else {
            ErrorClass::Client
        }
    }

    /// Whether the code is `name`.
    pub fn is(&self, name: &str) -> bool {
        self.code == name
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, _) => write!(f, "HTTP {}: {}", self.status, self.message),
            (false, true) => write!(f, "{} (HTTP {})", self.code, self.status),
            (false, false) => write!(f, "{}: {} (HTTP {})", self.code, self.message, self.status),
        }
    }
}

/// Cut a type name like `aws.ssm#ThrottlingException:http://…` to its shape name.
fn sanitize_code(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_command_carries_timeouts_directory_and_comment() {
        let body = SendCommand {
            instance_id: "i-0123456789abcdef0",
            document: SHELL_DOCUMENT,
            script: "echo hi",
            execution_timeout: 2,
            delivery_timeout: 10,
            working_directory: Some("/srv"),
            comment: "railbox abc",
        }
        .body();
        assert_eq!(
            body,
            json!({
                "InstanceIds": ["i-0123456789abcdef0"],
                "DocumentName": "AWS-RunShellScript",
                "TimeoutSeconds": 30,
                "Comment": "railbox abc",
                "Parameters": {
                    "commands": ["echo hi"],
                    "executionTimeout": ["5"],
                    "workingDirectory": ["/srv"],
                },
            })
        );
    }

    #[test]
    fn command_id_is_read_from_the_command() {
        let r = json!({"Command": {"CommandId": "abc", "Status": "Pending"}});
        assert_eq!(command_id(&r).unwrap(), "abc");
        assert!(command_id(&json!({})).is_err());
    }

    #[test]
    fn invocation_phase_prefers_status_details() {
        let inv = |status: &str, details: &str| Invocation {
            status: status.into(),
            status_details: details.into(),
            ..Invocation::default()
        };
        assert_eq!(
            inv("TimedOut", "DeliveryTimedOut").phase(),
            Phase::DeliveryTimedOut
        );
        assert_eq!(
            inv("TimedOut", "ExecutionTimedOut").phase(),
            Phase::ExecutionTimedOut
        );
        assert_eq!(inv("Failed", "Undeliverable").phase(), Phase::Undeliverable);
        assert_eq!(
            inv("Failed", "Delivery Timed Out").phase(),
            Phase::DeliveryTimedOut
        );
        assert_eq!(inv("Failed", "Failed").phase(), Phase::Failed);
        assert_eq!(inv("Success", "Success").phase(), Phase::Success);
        assert_eq!(inv("InProgress", "InProgress").phase(), Phase::Running);
        assert_eq!(inv("Cancelling", "Cancelling").phase(), Phase::Running);
        assert_eq!(inv("Cancelled", "Cancelled").phase(), Phase::Cancelled);
    }

    #[test]
    fn invocation_parses_a_service_answer() {
        let r = json!({
            "CommandId": "c", "InstanceId": "i-1", "Status": "Failed", "StatusDetails": "Failed",
            "ResponseCode": 3, "StandardOutputContent": "out", "StandardErrorContent": "",
            "ExecutionEndDateTime": "2023-05-12T12:49:12.236Z", "ExecutionElapsedTime": "PT0.1S",
        });
        let inv = Invocation::parse(&r).unwrap();
        assert_eq!(inv.response_code, 3);
        assert_eq!(inv.standard_output_content, "out");
        assert_eq!(inv.phase(), Phase::Failed);
    }

    #[test]
    fn error_code_comes_from_header_then_code_then_type() {
        let body = br#"{"__type":"aws.ssm#InvocationDoesNotExist:http://x","message":"m"}"#;
        let e = ServiceError::parse(400, None, body);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("InvocationDoesNotExist", "m")
        );
        let e = ServiceError::parse(400, Some("ThrottlingException"), body);
        assert_eq!(e.code, "ThrottlingException");
        let e = ServiceError::parse(400, None, br#"{"code":"X","Message":"big"}"#);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("X", "big"));
    }

    #[test]
    fn errors_are_classified_for_retries() {
        let e = |status, code: &str| ServiceError {
            status,
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(e(400, "ThrottlingException").class(), ErrorClass::Throttled);
        assert_eq!(e(429, "").class(), ErrorClass::Throttled);
        assert_eq!(
            e(403, "InvalidSignatureException").class(),
            ErrorClass::Denied
        );
        assert_eq!(
            e(400, "UnrecognizedClientException").class(),
            ErrorClass::Denied
        );
        assert_eq!(e(500, "InternalServerError").class(), ErrorClass::Transient);
        assert_eq!(e(503, "").class(), ErrorClass::Transient);
        assert_eq!(e(400, "InvalidInstanceId").class(), ErrorClass::Client);
    }

    #[test]
    fn instance_pages_parse() {
        let r = json!({"InstanceInformationList": [{"InstanceId": "i-1", "PingStatus": "Online",
            "PlatformType": "Linux", "IPAddress": "10.0.0.1"}], "NextToken": "t"});
        let (list, next) = parse_instances(&r).unwrap();
        assert_eq!(list[0].ip_address, "10.0.0.1");
        assert_eq!(next.as_deref(), Some("t"));
    }
}
