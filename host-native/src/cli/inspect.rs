//! The commands that read and steer a running coordinator: `status`,
//! `job list|watch|status|results|cancel|delete`, `workers`,
//! `leaderboard`, `epoch list|close`. Lists are fetched page by page up to
//! `--limit`; `--json` prints the API's own messages (proto3 JSON).

use std::future::Future;

use anyhow::{bail, Context, Result};

use crate::grpc::pb;

use super::args::{
    ClientArgs, ContributorAction, EpochAction, JobAction, LeaderboardArgs, ListArgs, WorkerOrderArg, WorkersArgs,
};
use super::client::{all_verified, connect, get_job, write_results, Client};
use super::output;

/// Items of a list call, page after page, until `limit` (0: all) or the end.
pub(super) async fn pages<T, F, Fut>(limit: usize, mut page: F) -> Result<Vec<T>>
where
    F: FnMut(String, u32) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let want = if limit == 0 { 0 } else { (limit - all.len()).min(u32::MAX as usize) as u32 };
        let (items, next) = page(token, want).await?;
        all.extend(items);
        if next.is_empty() || (limit > 0 && all.len() >= limit) {
            all.truncate(if limit == 0 { usize::MAX } else { limit });
            return Ok(all);
        }
        token = next;
    }
}

/// `shoal status`.
pub(super) async fn status(a: ClientArgs) -> Result<()> {
    let mut c = connect(&a).await?;
    let s = c.get_swarm_status(pb::GetSwarmStatusRequest {}).await.context("reading the swarm's status")?.into_inner();
    if a.json {
        return output::print_json(&s);
    }
    output::print_status(&s);
    Ok(())
}

/// `shoal job …`.
pub(super) async fn job(action: JobAction) -> Result<()> {
    match action {
        JobAction::List { list } => {
            let c = connect(&list.client).await?;
            let jobs = pages(list.limit, |page_token, page_size| {
                let mut c = c.clone();
                async move {
                    let r = c.list_jobs(pb::ListJobsRequest { page_size, page_token }).await?.into_inner();
                    Ok((r.jobs, r.next_page_token))
                }
            })
            .await
            .context("listing jobs")?;
            if list.client.json {
                return output::print_json(&pb::ListJobsResponse { jobs, next_page_token: String::new() });
            }
            output::print_jobs(&jobs);
        }
        JobAction::Watch { job, client } => watch(&job, &client).await?,
        JobAction::Status { job, client } => {
            let mut c = connect(&client).await?;
            let r = c
                .get_job(pb::GetJobRequest { job_id: job.clone() })
                .await
                .with_context(|| format!("reading job {job}"))?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            output::print_jobs(r.job.as_slice());
        }
        JobAction::Results { job, client, out } => {
            let mut c = connect(&client).await?;
            let n = write_results(&mut c, &job, &[], &out).await?;
            println!("{n} output files in {}", out.display());
        }
        JobAction::Cancel { job, client } => {
            let mut c = connect(&client).await?;
            let r = c
                .cancel_job(pb::CancelJobRequest { job_id: job.clone() })
                .await
                .with_context(|| format!("cancelling job {job}"))?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            println!("{}", if r.cancelled { "cancelled" } else { "already finished" });
        }
        JobAction::Delete { job, client } => {
            let mut c = connect(&client).await?;
            let r = c
                .delete_job(pb::DeleteJobRequest { job_id: job.clone() })
                .await
                .with_context(|| format!("deleting job {job}"))?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            if !r.deleted {
                bail!("no job {job} is stored");
            }
            println!("deleted");
        }
        JobAction::DeadLetters { job, list } => dead_letters(job, &list).await?,
        JobAction::Pending { job, list } => pending(&job, &list).await?,
        JobAction::Requeue { job, indices, client } => {
            let mut c = connect(&client).await?;
            let request = pb::RequeueDeadLettersRequest { job_id: job.clone(), indices };
            let r = c
                .requeue_dead_letters(request)
                .await
                .with_context(|| format!("re-queuing dead letters of job {job}"))?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            match r.tasks {
                0 => println!("nothing to re-queue: job {job} has no dead letter that was not re-queued"),
                n => println!("{n} tasks re-queued as job {}", r.job_id),
            }
        }
    }
    Ok(())
}

/// `shoal job dead-letters`: page by page, up to `--limit`.
async fn dead_letters(job: Option<String>, list: &ListArgs) -> Result<()> {
    let c = connect(&list.client).await?;
    let job_id = job.unwrap_or_default();
    let letters = pages(list.limit, |page_token, page_size| {
        let (mut c, job_id) = (c.clone(), job_id.clone());
        async move {
            let request = pb::ListDeadLettersRequest { page_size, page_token, job_id };
            let r = c.list_dead_letters(request).await?.into_inner();
            Ok((r.dead_letters, r.next_page_token))
        }
    })
    .await
    .context("listing dead letters")?;
    if list.client.json {
        return output::print_json(&pb::ListDeadLettersResponse {
            dead_letters: letters,
            next_page_token: String::new(),
        });
    }
    if letters.is_empty() {
        println!("no dead letters");
    }
    for d in letters {
        let requeued = if d.requeued_job_id.is_empty() {
            String::new()
        } else {
            format!(" → re-queued as {} task {}", d.requeued_job_id, d.requeued_index)
        };
        println!("{} task {}: {}{requeued}", d.job_id, d.index, d.reason);
    }
    Ok(())
}

/// `shoal job pending`: a job's pending tasks, page by page.
async fn pending(job: &str, list: &ListArgs) -> Result<()> {
    let c = connect(&list.client).await?;
    let tasks = pages(list.limit, |page_token, page_size| {
        let mut c = c.clone();
        let request = pb::ListPendingTasksRequest { job_id: job.to_owned(), page_size, page_token };
        async move {
            let r = c.list_pending_tasks(request).await?.into_inner();
            Ok((r.tasks, r.next_page_token))
        }
    })
    .await
    .with_context(|| format!("listing job {job}"))?;
    if list.client.json {
        return output::print_json(&pb::ListPendingTasksResponse { tasks, next_page_token: String::new() });
    }
    if tasks.is_empty() {
        println!("no pending tasks");
    }
    for t in tasks {
        println!(
            "task {}: queued {} ms, staged {} ms, running {} ms; {} replicas running, {} results, {} handed out",
            t.index, t.queued_ms, t.staged_ms, t.running_ms, t.replicas_running, t.results, t.attempts
        );
    }
    Ok(())
}

/// `shoal job watch`: follows the results stream (no polling) and ends
/// with the job; exit code 7 when not every task was verified.
async fn watch(job: &str, client: &ClientArgs) -> Result<()> {
    let mut c = connect(client).await?;
    let request = pb::StreamJobResultsRequest { job_id: job.to_owned(), follow: true, omit_outputs: true };
    let mut stream = c.stream_job_results(request).await.with_context(|| format!("following job {job}"))?.into_inner();
    while let Some(m) = stream.message().await.with_context(|| format!("following job {job}"))? {
        if client.json {
            println!("{}", serde_json::to_string(&m)?);
        } else if let Some(o) = &m.outcome {
            println!("{}", output::outcome_line(o));
        }
    }
    let end = get_job(&mut c, job).await?;
    if !client.json {
        output::print_jobs(std::slice::from_ref(&end));
    }
    all_verified(&end)
}

async fn list_workers(c: &Client, limit: usize, order: pb::WorkerOrder, descending: bool) -> Result<Vec<pb::Worker>> {
    pages(limit, |page_token, page_size| {
        let mut c = c.clone();
        async move {
            let request = pb::ListWorkersRequest { page_size, page_token, order_by: order.into(), descending };
            let r = c.list_workers(request).await?.into_inner();
            Ok((r.workers, r.next_page_token))
        }
    })
    .await
    .context("listing workers")
}

fn order_of(o: WorkerOrderArg) -> pb::WorkerOrder {
    match o {
        WorkerOrderArg::Id => pb::WorkerOrder::Id,
        WorkerOrderArg::Backend => pb::WorkerOrder::Backend,
        WorkerOrderArg::Tier => pb::WorkerOrder::Tier,
        WorkerOrderArg::Mflops => pb::WorkerOrder::Mflops,
        WorkerOrderArg::Credibility => pb::WorkerOrder::Credibility,
        WorkerOrderArg::Agreed => pb::WorkerOrder::Agreed,
        WorkerOrderArg::Accuracy => pb::WorkerOrder::EpochAccuracy,
        WorkerOrderArg::InFlight => pb::WorkerOrder::InFlight,
        WorkerOrderArg::LastSeen => pb::WorkerOrder::LastSeen,
    }
}

/// `shoal workers` and `shoal leaderboard`.
pub(super) async fn workers(a: WorkersArgs) -> Result<()> {
    let c = connect(&a.list.client).await?;
    let workers = list_workers(&c, a.list.limit, order_of(a.order), a.desc).await?;
    print_workers(workers, &a.list.client)
}

/// `shoal leaderboard`: contributors of all time by verified work (or
/// pay), most first; or the teams.
pub(super) async fn leaderboard(a: LeaderboardArgs) -> Result<()> {
    let c = connect(&a.list.client).await?;
    if a.teams {
        let page_size = if a.list.limit == 0 { 100 } else { a.list.limit.min(100) as u32 };
        let r = c.clone().list_teams(pb::ListTeamsRequest { page_size }).await.context("listing teams")?.into_inner();
        if a.list.client.json {
            return output::print_json(&r);
        }
        println!("{:<32} {:>8} {:>12} {:>24}", "team", "members", "verified", "earned (base units)");
        for t in r.teams {
            println!("{:<32} {:>8} {:>12} {:>24}", t.name, t.members, t.agreed, t.earned);
        }
        return Ok(());
    }
    let order = if a.earned { pb::ContributorOrder::Earned } else { pb::ContributorOrder::Agreed };
    let contributors = pages(a.list.limit, |page_token, page_size| {
        let mut c = c.clone();
        async move {
            let request = pb::ListContributorsRequest { page_size, page_token, order_by: order.into() };
            let r = c.list_contributors(request).await?.into_inner();
            Ok((r.contributors, r.next_page_token))
        }
    })
    .await
    .context("listing contributors")?;
    if a.list.client.json {
        let total_size = contributors.len() as u32;
        return output::print_json(&pb::ListContributorsResponse {
            contributors,
            next_page_token: String::new(),
            total_size,
        });
    }
    println!("{:<4} {:<36} {:>12} {:>24}  {:<20} team", "#", "contributor", "verified", "earned (base units)", "name");
    for (i, v) in contributors.iter().enumerate() {
        let id = if v.connected { format!("{} *", v.worker_id) } else { v.worker_id.clone() };
        println!("{:<4} {:<36} {:>12} {:>24}  {:<20} {}", i + 1, id, v.agreed, v.earned, v.display_name, v.team);
    }
    Ok(())
}

fn print_workers(workers: Vec<pb::Worker>, client: &ClientArgs) -> Result<()> {
    if client.json {
        let total_size = workers.len() as u32;
        return output::print_json(&pb::ListWorkersResponse { workers, next_page_token: String::new(), total_size });
    }
    output::print_workers(&workers);
    Ok(())
}

/// `shoal contributor show|approve|revoke|pending`.
pub(super) async fn contributor(action: ContributorAction) -> Result<()> {
    let (key, client) = match action {
        ContributorAction::Show { key, client } => (key, client),
        ContributorAction::Approve { key, client } => return approve(key, true, &client).await,
        ContributorAction::Revoke { key, client } => return approve(key, false, &client).await,
        ContributorAction::Stake { worker, amount, client } => {
            let mut c = connect(&client).await?;
            let r = c
                .set_stake(pb::SetStakeRequest { worker_id: worker.clone(), stake: amount })
                .await
                .with_context(|| format!("setting the stake of {worker}"))?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            println!("{} holds a stake of {} base units", r.worker_id, r.stake);
            return Ok(());
        }
        ContributorAction::Pending { client } => {
            let mut c = connect(&client).await?;
            let r = c
                .list_pending_contributors(pb::ListPendingContributorsRequest {})
                .await
                .context("listing identities waiting for approval")?
                .into_inner();
            if client.json {
                return output::print_json(&r);
            }
            for id in r.worker_ids {
                println!("{id}");
            }
            return Ok(());
        }
    };
    let mut c = connect(&client).await?;
    let r = c
        .get_contributor(pb::GetContributorRequest { key: key.clone() })
        .await
        .with_context(|| format!("reading contributor {key}"))?
        .into_inner();
    if client.json {
        return output::print_json(&r);
    }
    let Some(v) = r.contributor else { bail!("the coordinator answered no contributor") };
    println!("contributor  {}{}", v.worker_id, if v.connected { " (connected)" } else { "" });
    println!("credibility  {:.4}{}", f64::from(v.credibility_ppm) / 1e6, if v.slashed { "  SLASHED" } else { "" });
    println!("verified     {} all time, {} this epoch", v.agreed, v.epoch_agreed);
    println!("earned       {} base units over {} settled epochs", v.earned, v.epochs_paid);
    for (what, value) in [("payout to", &v.payout_address), ("name", &v.display_name), ("team", &v.team)] {
        if !value.is_empty() {
            println!("{what:<12} {value}");
        }
    }
    Ok(())
}

/// `shoal contributor approve|revoke KEY`.
async fn approve(key: String, approve: bool, client: &ClientArgs) -> Result<()> {
    let mut c = connect(client).await?;
    let r = c
        .approve_contributor(pb::ApproveContributorRequest { key: key.clone(), approve })
        .await
        .with_context(|| format!("{} {key}", if approve { "approving" } else { "withdrawing the approval of" }))?
        .into_inner();
    if client.json {
        return output::print_json(&r);
    }
    let what = if approve { "approved" } else { "no longer approved" };
    println!("{} {what}{}", r.worker_id, if r.changed { "" } else { " (already)" });
    Ok(())
}

/// `shoal epoch [list|close]`.
pub(super) async fn epoch(action: Option<EpochAction>, list: ListArgs) -> Result<()> {
    let list = match action {
        None => list,
        Some(EpochAction::List { list }) => list,
        Some(EpochAction::Close { client }) => {
            let mut c = connect(&client).await?;
            let r = c.close_epoch(pb::CloseEpochRequest {}).await.context("closing the epoch")?.into_inner();
            if client.json {
                return output::print_json(&r);
            }
            output::print_epochs(r.epoch.as_slice());
            return Ok(());
        }
    };
    let c = connect(&list.client).await?;
    let epochs = pages(list.limit, |page_token, page_size| {
        let mut c = c.clone();
        async move {
            let r = c.list_epochs(pb::ListEpochsRequest { page_size, page_token }).await?.into_inner();
            Ok((r.epochs, r.next_page_token))
        }
    })
    .await
    .context("listing epochs")?;
    if list.client.json {
        return output::print_json(&pb::ListEpochsResponse { epochs, next_page_token: String::new() });
    }
    output::print_epochs(&epochs);
    Ok(())
}
