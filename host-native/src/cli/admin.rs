//! The operator's commands on a running coordinator: `shoal token
//! create|list|revoke` (API tokens with roles; a revocation holds from the
//! next call on, no restart) and `shoal backup` / `shoal restore`.

use anyhow::{Context, Result};

use crate::grpc::{pb, role_by_name, role_name};

use super::args::{BackupArgs, RestoreArgs, TokenAction};
use super::client::connect;

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
            let info = created.info.unwrap_or_default();
            if client.json {
                let row = serde_json::json!({"id": info.id, "name": info.name, "role": role_name(info.role),
                    "token": created.token});
                println!("{}", serde_json::to_string_pretty(&row)?);
            } else {
                eprintln!(
                    "token `{}` (id {}, role {}): shown once, the coordinator keeps only its hash",
                    info.name,
                    info.id,
                    role_name(info.role)
                );
                println!("{}", created.token);
            }
        }
        TokenAction::List { client } => {
            let mut c = connect(&client).await?;
            let list = c.list_tokens(pb::Empty {}).await.context("listing tokens")?.into_inner().tokens;
            print_tokens(&list, client.json)?;
        }
        TokenAction::Revoke { token, client } => {
            let mut c = connect(&client).await?;
            let info = c
                .revoke_token(pb::RevokeTokenRequest { name_or_id: token.clone() })
                .await
                .with_context(|| format!("revoking `{token}`"))?
                .into_inner();
            println!("revoked `{}` (id {})", info.name, info.id);
        }
    }
    Ok(())
}

fn print_tokens(list: &[pb::TokenInfo], json: bool) -> Result<()> {
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|t| {
                serde_json::json!({"id": t.id, "name": t.name, "role": role_name(t.role),
                    "created_ms": t.created_ms, "revoked_ms": (t.revoked_ms > 0).then_some(t.revoked_ms)})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<14}{:<24}{:<8}{:<16}state", "id", "name", "role", "created (ms)");
    for t in list {
        let state = if t.revoked_ms > 0 { format!("revoked at {}", t.revoked_ms) } else { "live".into() };
        println!("{:<14}{:<24}{:<8}{:<16}{state}", t.id, t.name, role_name(t.role), t.created_ms);
    }
    Ok(())
}

pub(super) async fn backup(a: BackupArgs) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let mut c = connect(&a.client).await?;
    let mut stream = c.backup(pb::Empty {}).await.context("asking for a backup")?.into_inner();
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
