//! Errors with `google.rpc` details, so a program can tell what was wrong
//! without parsing the message: `BadRequest` field violations for input
//! the service refuses, `ResourceInfo` for what does not exist, `ErrorInfo`
//! (a stable reason in Shoal's domain) for limits and preconditions. And
//! the other side: one readable line for a person from any status.

use std::fmt::Write as _;

use shoal_core::JobId;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of Shoal's reasons.
pub const ERROR_DOMAIN: &str = "shoal.dev";

/// INVALID_ARGUMENT: `field` (a path such as `header.quorum` or
/// `tasks[3].kernel`) is wrong, and why.
pub fn bad_field(field: impl Into<String>, why: impl Into<String>) -> Status {
    let (field, why) = (field.into(), why.into());
    let message = format!("{field}: {why}");
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request_violation(field, why))
}

/// NOT_FOUND for a resource of `kind` (e.g. `shoal.v1.Job`) named `name`.
pub fn not_found(kind: &str, name: impl Into<String>, message: impl Into<String>) -> Status {
    let message = message.into();
    let details = ErrorDetails::with_resource_info(kind, name, "", message.clone());
    Status::with_error_details(Code::NotFound, message, details)
}

/// NOT_FOUND for a job.
pub fn job_not_found(job: JobId) -> Status {
    not_found("shoal.v1.Job", job.to_string(), format!("no job {job}"))
}

/// A refusal with a stable `reason` (UPPER_SNAKE_CASE) in Shoal's domain:
/// RESOURCE_EXHAUSTED for limits, FAILED_PRECONDITION for state.
pub fn with_reason(code: Code, reason: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new());
    Status::with_error_details(code, message, details)
}

/// A status as one line for people: the code's name, the message, and
/// what the details add (field violations, the missing resource, the
/// reason), never a debug dump.
pub fn describe(status: &Status) -> String {
    let mut line = format!("{}: {}", code_name(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            if !status.message().contains(&v.description) {
                let _ = write!(line, " [{}: {}]", v.field, v.description);
            }
        }
    }
    if let Some(info) = details.error_info() {
        let _ = write!(line, " ({})", info.reason);
    }
    line
}

/// The canonical name of a code (`NOT_FOUND`), as gRPC documents it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_survive_the_wire_encoding_and_read_as_one_line() {
        let sent = bad_field("header.quorum", "quorum 9 is more than the redundancy 3");
        // What a client decodes: the status as its HTTP/2 trailers carry it.
        let wire = |s: Status| {
            let response: tonic::codegen::http::Response<()> = s.into_http();
            Status::from_header_map(response.headers()).expect("decodes")
        };
        let got = wire(sent);
        let bad = got.get_details_bad_request().expect("a BadRequest detail");
        assert_eq!(bad.field_violations[0].field, "header.quorum");
        assert_eq!(describe(&got), "INVALID_ARGUMENT: header.quorum: quorum 9 is more than the redundancy 3");

        let job = JobId::from_bytes([7; 16]);
        let got = wire(job_not_found(job));
        let info = got.get_details_resource_info().expect("a ResourceInfo detail");
        assert_eq!((info.resource_type.as_str(), info.resource_name.as_str()), ("shoal.v1.Job", &*job.to_string()));

        let full = with_reason(Code::ResourceExhausted, "QUEUE_FULL", "the queue is full");
        assert_eq!(describe(&full), "RESOURCE_EXHAUSTED: the queue is full (QUEUE_FULL)");
    }
}
