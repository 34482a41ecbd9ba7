//! The operator's commands on a running coordinator: `shoal token
//! create|list|revoke` (API tokens with roles; a revocation holds from the
//! next call on, no restart) and `shoal backup` / `shoal restore`.

use anyhow::{Context, Result};

use crate::grpc::{pb, role_by_name, role_name};

use super::args::{BackupArgs, RestoreArgs, TokenAction};
use super::client::connect;
use super::output::print_json;

pub(super) async fn token(action: TokenAction) -> Result<()> {
    match action {
        TokenAction::Create { role, name, client } => {
            let role = role_by_name(&role)?;
            let mut c = connect(&client).await?;
            let created = c
                .create_token(pb::CreateTokenRequest { name: name.clone(), role: role.into() })
                .await
                .with_context(|| format!("creating the token `{name}`"))?
                .into_inner();
            if client.json {
                return print_json(&created);
            }
            let info = created.token.unwrap_or_default();
            {
                eprintln!(
                    "token `{}` (id {}, role {}): shown once, the coordinator keeps only its hash",
                    info.name,
                    info.id,
                    role_name(info.role)
                );
                println!("{}", created.secret);
            }
        }
        TokenAction::List { list } => {
            let c = connect(&list.client).await?;
            let tokens = super::inspect::pages(list.limit, |page_token, page_size| {
                let mut c = c.clone();
                async move {
                    let r = c.list_tokens(pb::ListTokensRequest { page_size, page_token }).await?.into_inner();
                    Ok((r.tokens, r.next_page_token))
                }
            })
            .await
            .context("listing tokens")?;
            if list.client.json {
                return print_json(&pb::ListTokensResponse { tokens, next_page_token: String::new() });
            }
            print_tokens(&tokens);
        }
        TokenAction::Revoke { token, client } => {
            let mut c = connect(&client).await?;
            let r = c
                .revoke_token(pb::RevokeTokenRequest { name_or_id: token.clone() })
                .await
                .with_context(|| format!("revoking `{token}`"))?
                .into_inner();
            if client.json {
                return print_json(&r);
            }
            let info = r.token.unwrap_or_default();
            println!("revoked `{}` (id {})", info.name, info.id);
        }
    }
    Ok(())
}

fn print_tokens(list: &[pb::Token]) {
    println!("{:<14}{:<24}{:<8}{:<16}state", "id", "name", "role", "created (ms)");
    for t in list {
        let state = if t.revoked_ms > 0 { format!("revoked at {}", t.revoked_ms) } else { "live".into() };
        println!("{:<14}{:<24}{:<8}{:<16}{state}", t.id, t.name, role_name(t.role), t.created_ms);
    }
}

pub(super) async fn backup(a: BackupArgs) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let mut c = connect(&a.client).await?;
    let mut stream = c.backup(pb::BackupRequest {}).await.context("asking for a backup")?.into_inner();
    let partial = a.out.with_extension("partial");
    let mut file =
        tokio::fs::File::create(&partial).await.with_context(|| format!("creating {}", partial.display()))?;
    let mut bytes = 0u64;
    let written = async {
        while let Some(chunk) = stream.message().await.context("receiving the backup")? {
            file.write_all(&chunk.data).await.context("writing the backup")?;
            bytes += chunk.data.len() as u64;
        }
        file.sync_all().await.context("syncing the backup")?;
        anyhow::Ok(())
    };
    if let Err(e) = written.await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &a.out).await.with_context(|| format!("naming {}", a.out.display()))?;
    println!(
        "{} ({bytes} bytes) in {:.1?}; shoal restore --from it --data NEW_FOLDER",
        a.out.display(),
        started.elapsed()
    );
    Ok(())
}

pub(super) fn restore(a: &RestoreArgs) -> Result<()> {
    crate::backup::restore(&a.from, &a.data)?;
    println!("restored into {}; start it with shoal coordinator --data {}", a.data.display(), a.data.display());
    Ok(())
}
