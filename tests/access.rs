//! Least-privilege access through the real service: every RPC called with
//! no token, each role's token, and a revoked token, on the gRPC port
//! (native gRPC over HTTP/2) and on the HTTP port (gRPC-web over HTTP/1.1,
//! as a browser calls it), and the HTTP pages that read the swarm.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use common::{http_get, mixed_tasks, status_of, test_config};
use shoal_native::grpc::pb::shoal_service_client::ShoalServiceClient;
use shoal_native::grpc::{kernel_to_pb, pb, WithToken};
use shoal_native::Service;
use tonic::Code;

type Client = ShoalServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, WithToken>>;

const ADMIN: &str = "admin-token-for-the-access-tests";

async fn client_with(service: &Service, token: &str) -> Client {
    let channel = shoal_native::grpc::channel(&service.grpc_url(), None).await.expect("gRPC connects");
    ShoalServiceClient::with_interceptor(channel, WithToken::new(token).expect("ascii token"))
}

fn job_messages(name: &str) -> Vec<pb::SubmitJobRequest> {
    use pb::submit_job_request::Part;
    let (kernel, inputs) = mixed_tasks(1).swap_remove(0);
    vec![
        pb::SubmitJobRequest { part: Some(Part::Header(pb::JobHeader { name: name.into(), ..Default::default() })) },
        pb::SubmitJobRequest {
            part: Some(Part::Task(pb::Task {
                kernel: Some(kernel_to_pb(&kernel)),
                inputs: inputs.into_iter().map(Into::into).collect(),
                parts: Vec::new(),
            })),
        },
    ]
}

async fn submit_as(c: &mut Client, name: &str) -> String {
    c.submit_job(tokio_stream::iter(job_messages(name))).await.expect("submitted").into_inner().job_id
}

/// What a caller should get.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Ok,
    Denied,
}

type NativeCall = Box<dyn Fn(Client) -> Pin<Box<dyn Future<Output = Code> + Send>> + Send + Sync>;

/// One RPC: its path, its request as gRPC-web frames, the same call over
/// native gRPC, and what the read, submit and admin tokens should get.
struct Row {
    method: &'static str,
    web_body: Vec<u8>,
    native: NativeCall,
    want: [Want; 3],
}

fn frame(m: &impl prost::Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut f = vec![0];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(&body);
    f
}

fn code_of<T>(r: Result<T, tonic::Status>) -> Code {
    r.err().map_or(Code::Ok, |s| s.code())
}

macro_rules! row {
    ($method:literal, $msg:expr, $call:ident, $want:expr) => {{
        let msg = $msg;
        let web_body = frame(&msg);
        let native: NativeCall = Box::new(move |mut c: Client| {
            let msg = msg.clone();
            Box::pin(async move { code_of(c.$call(msg).await) })
        });
        Row { method: $method, web_body, native, want: $want }
    }};
}

/// Jobs the table reads: `mine` the submit token submitted, `theirs` the
/// admin did, and two finished ones to delete (the submitter's, the admin's).
struct Jobs {
    mine: String,
    theirs: String,
    doomed_mine: String,
    doomed_theirs: String,
}

/// Every RPC of the service over `jobs`; `tag` makes names unique per port.
fn table(jobs: &Jobs, tag: &str) -> Vec<Row> {
    use Want::{Denied as D, Ok as O};
    let (mine, theirs) = (jobs.mine.as_str(), jobs.theirs.as_str());
    let job = |id: &str| pb::GetJobRequest { job_id: id.into() };
    let kernels = |id: &str| pb::ListJobKernelsRequest { job_id: id.into(), ..Default::default() };
    let cancel = |id: &str| pb::CancelJobRequest { job_id: id.into() };
    let delete = |id: &str| pb::DeleteJobRequest { job_id: id.into() };
    let results = |id: &str| pb::StreamJobResultsRequest { job_id: id.into(), follow: false, omit_outputs: true };
    let dead = |id: &str| pb::ListDeadLettersRequest { job_id: id.into(), ..Default::default() };
    let requeue = |id: &str| pb::RequeueDeadLettersRequest { job_id: id.into(), indices: Vec::new() };
    let pending = |id: &str| pb::ListPendingTasksRequest { job_id: id.into(), ..Default::default() };
    let submit_msgs = job_messages(&format!("via-{tag}"));
    let submit_body: Vec<u8> = submit_msgs.iter().flat_map(frame).collect();
    let submit_native: NativeCall = Box::new(move |mut c: Client| {
        let msgs = submit_msgs.clone();
        Box::pin(async move { code_of(c.submit_job(tokio_stream::iter(msgs)).await) })
    });
    vec![
        Row { method: "SubmitJob", web_body: submit_body, native: submit_native, want: [D, O, O] },
        row!("GetJob", job(mine), get_job, [O, O, O]),
        row!("GetJob", job(theirs), get_job, [O, D, O]),
        row!("ListJobs", pb::ListJobsRequest::default(), list_jobs, [O, O, O]),
        row!("ListJobKernels", kernels(mine), list_job_kernels, [O, O, O]),
        row!("ListJobKernels", kernels(theirs), list_job_kernels, [O, D, O]),
        row!("StreamJobResults", results(mine), stream_job_results, [O, O, O]),
        row!("StreamJobResults", results(theirs), stream_job_results, [O, D, O]),
        row!("ListDeadLetters", pb::ListDeadLettersRequest::default(), list_dead_letters, [O, D, O]),
        row!("ListDeadLetters", dead(mine), list_dead_letters, [O, O, O]),
        row!("ListPendingTasks", pending(mine), list_pending_tasks, [O, O, O]),
        row!("ListPendingTasks", pending(theirs), list_pending_tasks, [O, D, O]),
        row!("RequeueDeadLetters", requeue(theirs), requeue_dead_letters, [D, D, O]),
        row!("RequeueDeadLetters", requeue(mine), requeue_dead_letters, [D, O, O]),
        row!("CancelJob", cancel(theirs), cancel_job, [D, D, O]),
        row!("CancelJob", cancel(mine), cancel_job, [D, O, O]),
        row!("DeleteJob", delete(&jobs.doomed_theirs), delete_job, [D, D, O]),
        row!("DeleteJob", delete(&jobs.doomed_mine), delete_job, [D, O, O]),
        row!("ListWorkers", pb::ListWorkersRequest::default(), list_workers, [O, O, O]),
        row!("ListContributors", pb::ListContributorsRequest::default(), list_contributors, [O, O, O]),
        row!("ListTeams", pb::ListTeamsRequest::default(), list_teams, [O, O, O]),
        row!("ListPendingContributors", pb::ListPendingContributorsRequest {}, list_pending_contributors, [O, O, O]),
        row!(
            "ApproveContributor",
            pb::ApproveContributorRequest { key: format!("id-{}", "0".repeat(32)), approve: false },
            approve_contributor,
            [D, D, O]
        ),
        row!("SetStake", pb::SetStakeRequest { worker_id: "nobody".into(), stake: "0".into() }, set_stake, [D, D, O]),
        row!("GetSwarmStatus", pb::GetSwarmStatusRequest {}, get_swarm_status, [O, O, O]),
        row!("ListEpochs", pb::ListEpochsRequest::default(), list_epochs, [O, O, O]),
        row!("CloseEpoch", pb::CloseEpochRequest {}, close_epoch, [D, D, O]),
        row!("GetConsensus", pb::GetConsensusRequest {}, get_consensus, [O, O, O]),
        row!("GetShadowStats", pb::GetShadowStatsRequest {}, get_shadow_stats, [O, O, O]),
        row!("StreamEvents", pb::StreamEventsRequest {}, stream_events, [O, O, O]),
        row!("StreamStateDiffs", pb::StreamStateDiffsRequest { from_height: 1 }, stream_state_diffs, [O, D, O]),
        row!("WhoAmI", pb::WhoAmIRequest {}, who_am_i, [O, O, O]),
        row!(
            "CreateToken",
            pb::CreateTokenRequest { name: format!("made-{tag}"), role: pb::Role::Read.into() },
            create_token,
            [D, D, O]
        ),
        row!("ListTokens", pb::ListTokensRequest::default(), list_tokens, [D, D, O]),
        row!("Backup", pb::BackupRequest {}, backup, [D, D, O]),
        row!("RevokeToken", pb::RevokeTokenRequest { name_or_id: format!("throwaway-{tag}") }, revoke_token, [D, D, O]),
    ]
}

/// A gRPC-web call over HTTP/1.1, as a browser makes it: its status from
/// the response headers (a refusal is trailers-only) or from the trailer
/// frame; a stream still open after a second was accepted.
async fn grpc_web(addr: SocketAddr, method: &str, token: Option<&str>, body: &[u8]) -> Code {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut req = format!(
        "POST /shoal.v1.ShoalService/{method} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/grpc-web+proto\r\n\
         X-Grpc-Web: 1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(&req).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        if let Some(at) = text.find("grpc-status:") {
            let digits: String = text[at + 12..].trim_start().chars().take_while(char::is_ascii_digit).collect();
            return Code::from_i32(digits.parse().expect("a status number"));
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("{method}: the response ended without a status: {text}"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("{method}: {e}"),
            Err(_) => {
                assert!(text.starts_with("http/1.1 200"), "{method}: {text}");
                return Code::Ok;
            }
        }
    }
}

/// An HTTP GET's status code.
async fn get_status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    status_of(&http_get(addr, path, &auth).await)
}

struct Tokens {
    read: String,
    submit: String,
    revoked: String,
}

async fn make_tokens(admin: &mut Client) -> Tokens {
    let mut make = async |name: &str, role: pb::Role| {
        admin
            .create_token(pb::CreateTokenRequest { name: name.into(), role: role.into() })
            .await
            .expect("an admin creates tokens")
            .into_inner()
            .secret
    };
    let read = make("reader", pb::Role::Read).await;
    let submit = make("submitter", pb::Role::Submit).await;
    let revoked = make("leaver", pb::Role::Admin).await;
    make("throwaway-grpc", pb::Role::Read).await;
    make("throwaway-http", pb::Role::Read).await;
    admin.revoke_token(pb::RevokeTokenRequest { name_or_id: "leaver".into() }).await.expect("revoked");
    Tokens { read, submit, revoked }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_answers_each_role_on_both_ports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = ADMIN.into();
    let service = Service::start(cfg).await.expect("service starts");
    let mut admin = client_with(&service, ADMIN).await;
    let t = make_tokens(&mut admin).await;
    let theirs = submit_as(&mut admin, "the admin's").await;
    let mut submitter = client_with(&service, &t.submit).await;
    let mine = submit_as(&mut submitter, "the submitter's").await;

    // A submit token lists its own jobs only; read sees every job.
    let listed = submitter.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs;
    assert_eq!(listed.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(), vec![mine.as_str()]);
    let mut reader = client_with(&service, &t.read).await;
    assert_eq!(reader.list_jobs(pb::ListJobsRequest::default()).await.expect("list").into_inner().jobs.len(), 2);

    let callers: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("revoked", Some(&t.revoked)),
        ("read", Some(&t.read)),
        ("submit", Some(&t.submit)),
        ("admin", Some(ADMIN)),
    ];
    let mut checked = 0;
    for (port, addr) in [("grpc", service.grpc_addr), ("http", service.http_addr)] {
        // Two finished jobs to delete on this port: cancelled, so ended.
        let doomed_mine = submit_as(&mut submitter, &format!("doomed-{port}")).await;
        let doomed_theirs = submit_as(&mut admin, &format!("doomed-{port}")).await;
        for j in [&doomed_mine, &doomed_theirs] {
            admin.cancel_job(pb::CancelJobRequest { job_id: j.clone() }).await.expect("cancelled");
        }
        let jobs = Jobs { mine: mine.clone(), theirs: theirs.clone(), doomed_mine, doomed_theirs };
        for row in table(&jobs, port) {
            for (who, token) in callers {
                let want = match who {
                    // Who am I is answered to anyone (a page asks before it
                    // asks its user for a token).
                    "no token" if row.method == "WhoAmI" => Code::Ok,
                    "no token" | "revoked" => Code::Unauthenticated,
                    _ => {
                        let i = ["read", "submit", "admin"].iter().position(|r| *r == who).expect("a role");
                        if row.want[i] == Want::Ok {
                            Code::Ok
                        } else {
                            Code::PermissionDenied
                        }
                    }
                };
                let got = if port == "grpc" {
                    (row.native)(client_with(&service, token.unwrap_or_default()).await).await
                } else {
                    grpc_web(addr, row.method, token, &row.web_body).await
                };
                assert_eq!(got, want, "{} on the {port} port as {who}", row.method);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 36 * 5);

    // The pages that read the swarm: metrics for read and admin; stats for
    // every role; neither without a (live) token.
    let http = service.http_addr;
    for (path, want) in [
        ("/metrics", [401, 401, 200, 403, 200]),
        ("/api/stats", [401, 401, 200, 200, 200]),
        ("/swarm/workers", [401, 401, 200, 200, 200]),
    ] {
        for ((who, token), want) in callers.iter().zip(want) {
            assert_eq!(get_status(http, path, *token).await, want, "{path} as {who}");
        }
    }
    assert_eq!(get_status(http, "/healthz", None).await, 200, "health is public");
    service.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_outlive_a_restart_and_a_revocation_holds_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = ADMIN.into();
    let service = Service::start(cfg.clone()).await.expect("service starts");
    let mut admin = client_with(&service, ADMIN).await;
    let t = make_tokens(&mut admin).await;
    let mut submitter = client_with(&service, &t.submit).await;
    let mine = submit_as(&mut submitter, "kept").await;
    // Revoked while a client holds it: its next call is refused.
    let mut reader = client_with(&service, &t.read).await;
    reader.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("a live token reads");
    // A stream the token opened before its revocation ends with it.
    let mut open = reader.stream_events(pb::StreamEventsRequest {}).await.expect("a live token follows").into_inner();
    admin.revoke_token(pb::RevokeTokenRequest { name_or_id: "reader".into() }).await.expect("revoked");
    let e = reader.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect_err("a revoked token is refused");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{e}");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match open.message().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the open stream ends within seconds");
    let e = ended.expect_err("it ends with an error");
    assert!(e.code() == Code::Unauthenticated && e.message().contains("revoked"), "{e}");
    // Revoking twice, an unknown name, a bad name, a taken name: clear errors.
    let again = admin.revoke_token(pb::RevokeTokenRequest { name_or_id: "reader".into() }).await;
    assert_eq!(again.expect_err("already revoked").code(), Code::FailedPrecondition);
    let unknown = admin.revoke_token(pb::RevokeTokenRequest { name_or_id: "nobody".into() }).await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);
    let bad = admin.create_token(pb::CreateTokenRequest { name: "a b".into(), role: pb::Role::Read.into() }).await;
    assert_eq!(bad.expect_err("bad name").code(), Code::InvalidArgument);
    let taken =
        admin.create_token(pb::CreateTokenRequest { name: "submitter".into(), role: pb::Role::Read.into() }).await;
    assert_eq!(taken.expect_err("taken").code(), Code::AlreadyExists);
    let no_role = admin.create_token(pb::CreateTokenRequest { name: "x".into(), role: 0 }).await;
    assert_eq!(no_role.expect_err("no role").code(), Code::InvalidArgument);
    service.shutdown().await.expect("clean shutdown");

    // Restarted: tokens, revocations and the job's owner are where they were;
    // storage holds no token, only digests.
    let service = Service::start(cfg).await.expect("service restarts");
    let mut submitter = client_with(&service, &t.submit).await;
    let status = submitter
        .get_job(pb::GetJobRequest { job_id: mine.clone() })
        .await
        .expect("its own job")
        .into_inner()
        .job
        .expect("a job");
    assert_eq!(status.name, "kept");
    let mut reader = client_with(&service, &t.read).await;
    assert_eq!(
        reader.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect_err("still revoked").code(),
        Code::Unauthenticated
    );
    let who = submitter.who_am_i(pb::WhoAmIRequest {}).await.expect("who").into_inner();
    assert!(who.authenticated && who.name == "submitter" && who.role == i32::from(pb::Role::Submit), "{who:?}");
    let mut admin = client_with(&service, ADMIN).await;
    let list = admin.list_tokens(pb::ListTokensRequest::default()).await.expect("list").into_inner().tokens;
    assert_eq!(list.len(), 5);
    assert_eq!(list.iter().filter(|t| t.revoked_ms > 0).count(), 2, "{list:?}");
    service.shutdown().await.expect("clean shutdown");
    let stored = std::fs::read(dir.path().join("shoal.redb")).expect("storage file");
    for token in [&t.read, &t.submit, &t.revoked] {
        assert!(!stored.windows(token.len()).any(|w| w == token.as_bytes()), "a token is stored in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_access_is_what_the_configuration_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = test_config(dir.path());
    cfg.server.api_token = ADMIN.into();
    cfg.server.anonymous = shoal_native::access::Anonymous::Swarm;
    let service = Service::start(cfg).await.expect("service starts");
    let mut anon = client_with(&service, "").await;
    anon.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect("the swarm page is open");
    anon.list_workers(pb::ListWorkersRequest::default()).await.expect("the swarm page is open");
    assert_eq!(
        anon.list_jobs(pb::ListJobsRequest::default()).await.expect_err("jobs are not").code(),
        Code::Unauthenticated
    );
    let submitted = anon.submit_job(tokio_stream::iter(job_messages("anon"))).await;
    assert_eq!(submitted.expect_err("nor submitting").code(), Code::Unauthenticated);
    let who = anon.who_am_i(pb::WhoAmIRequest {}).await.expect("who").into_inner();
    assert!(!who.authenticated && who.anonymous() == pb::AnonymousAccess::Swarm, "{who:?}");
    // A wrong token is refused even for what is open without one.
    let mut wrong = client_with(&service, "shoal_api_wrong").await;
    assert_eq!(
        wrong.get_swarm_status(pb::GetSwarmStatusRequest {}).await.expect_err("wrong").code(),
        Code::Unauthenticated
    );
    assert_eq!(get_status(service.http_addr, "/api/stats", None).await, 200);
    assert_eq!(get_status(service.http_addr, "/metrics", None).await, 401);
    service.shutdown().await.expect("clean shutdown");
}
