//! Exit codes scripts can act on, and the one line a failure prints: the
//! context of what was tried, then the coordinator's answer with its
//! details (never tonic's debug dump). `shoal --help` lists the codes.

use std::process::ExitCode;

use crate::grpc::errors::describe;

/// A waited-for job ended with tasks that were not verified.
#[derive(Debug, thiserror::Error)]
#[error("job {job}: {verified} of {tasks} tasks verified ({dead_lettered} dead-lettered, {cancelled} cancelled)")]
pub(super) struct NotAllVerified {
    pub(super) job: String,
    pub(super) tasks: u32,
    pub(super) verified: u32,
    pub(super) dead_lettered: u32,
    pub(super) cancelled: u32,
}

/// The exit code of a failure.
pub(super) fn code(e: &anyhow::Error) -> u8 {
    use tonic::Code as C;
    if e.chain().any(<dyn std::error::Error + 'static>::is::<NotAllVerified>) {
        return 7;
    }
    if e.chain().any(<dyn std::error::Error + 'static>::is::<crate::grpc::ChannelError>) {
        return 5;
    }
    match e.chain().find_map(|c| c.downcast_ref::<tonic::Status>()).map(tonic::Status::code) {
        Some(C::NotFound) => 3,
        Some(C::PermissionDenied | C::Unauthenticated) => 4,
        Some(C::Unavailable | C::DeadlineExceeded) => 5,
        Some(C::InvalidArgument | C::FailedPrecondition | C::ResourceExhausted | C::AlreadyExists | C::OutOfRange) => 6,
        _ => 1,
    }
}

/// A failure as one line: each context, then the cause (a gRPC status
/// with its details described).
pub(super) fn message(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.downcast_ref::<tonic::Status>().map_or_else(|| c.to_string(), describe))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Reports a failure (a text line, or a JSON log line with `--log-json`,
/// so that stream stays pure JSON) and gives its exit code.
pub(super) fn fail(e: &anyhow::Error, log_json: bool) -> ExitCode {
    let (message, code) = (message(e), code(e));
    if log_json {
        tracing::error!(exit_code = code, "{message}");
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn statuses_map_to_documented_codes_and_read_as_one_line() {
        let e = Err::<(), _>(crate::grpc::errors::job_not_found(shoal_core::JobId::from_bytes([1; 16])))
            .context("reading the job")
            .expect_err("fails");
        assert_eq!(code(&e), 3);
        assert_eq!(
            message(&e),
            format!("reading the job: NOT_FOUND: no job {}", shoal_core::JobId::from_bytes([1; 16]))
        );
        let e = anyhow::Error::new(tonic::Status::permission_denied("submit tokens read their own jobs"));
        assert_eq!(code(&e), 4);
        let e = anyhow::Error::new(crate::grpc::ChannelError("connection refused".into())).context("cannot reach");
        assert_eq!(code(&e), 5);
        let e = anyhow::Error::new(crate::grpc::errors::bad_field("header.quorum", "too big"));
        assert_eq!((code(&e), message(&e).as_str()), (6, "INVALID_ARGUMENT: header.quorum: too big"));
        assert_eq!(code(&anyhow::anyhow!("disk full")), 1);
    }
}
