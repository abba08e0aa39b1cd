//! `berth cp`: copy files and directories between this machine and a session, like `docker cp`.
//! Everything streams; directories travel as tar archives, keeping modes and symlinks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_client::Client;
use berth_proto::files::FileKind;
use clap::Args;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::{Connection, explain};

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path, or SESSION:PATH.
    src: String,
    /// Destination: a local path, or SESSION:PATH.
    dst: String,
    #[command(flatten)]
    conn: Connection,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Local(PathBuf),
    Session { id: String, path: String },
}

/// `SESSION:PATH` when the part before the first `:` looks like a session id; a local path
/// otherwise (so `./a:b` and `/tmp/a:b` stay local, as with `docker cp`).
fn parse(arg: &str) -> Location {
    match arg.split_once(':') {
        Some((id, path)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Location::Session {
                id: id.to_owned(),
                path: if path.is_empty() {
                    ".".to_owned()
                } else {
                    path.to_owned()
                },
            }
        }
        _ => Location::Local(PathBuf::from(arg)),
    }
}

pub async fn run(args: CpArgs) -> anyhow::Result<()> {
    let client = args.conn.client()?;
    match (parse(&args.src), parse(&args.dst)) {
        (Location::Local(src), Location::Session { id, path }) => {
            upload(&client, &src, &id, &path).await
        }
        (Location::Session { id, path }, Location::Local(dst)) => {
            download(&client, &id, &path, &dst).await
        }
        _ => anyhow::bail!(
            "one side must be local and the other SESSION:PATH, e.g. `berth cp notes.txt s4k2...:notes.txt`"
        ),
    }
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| "root".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    let style =
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

async fn upload(client: &Client, src: &Path, id: &str, dst: &str) -> anyhow::Result<()> {
    let meta = tokio::fs::metadata(src)
        .await
        .with_context(|| format!("cannot read {}", src.display()))?;
    let src_name = base_name(&src.to_string_lossy());
    let into_dir = client
        .stat_file(id, dst)
        .await
        .is_ok_and(|e| e.kind == FileKind::Dir);
    if meta.is_dir() {
        // Like `docker cp`: into an existing directory as its own name, else as the new name.
        let root = if into_dir { src_name } else { ".".to_owned() };
        let (writer, reader) = tokio::io::duplex(256 * 1024);
        let source = src.to_owned();
        let packer = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(SyncIoBridge::new(writer));
            builder.follow_symlinks(false);
            builder.append_dir_all(&root, &source)?;
            builder.finish()
        });
        let bar = progress(None, "uploading");
        let counted = ReaderStream::new(reader).inspect_ok({
            let bar = bar.clone();
            move |chunk| bar.inc(chunk.len() as u64)
        });
        client
            .upload_archive(id, dst, reqwest::Body::wrap_stream(counted))
            .await
            .map_err(explain)?;
        packer.await?.context("reading the local directory")?;
        bar.finish_and_clear();
    } else {
        let target = if into_dir || dst.ends_with('/') {
            format!("{}/{src_name}", dst.trim_end_matches('/'))
        } else {
            dst.to_owned()
        };
        let file = tokio::fs::File::open(src).await?;
        let bar = progress(Some(meta.len()), "uploading");
        let counted = ReaderStream::with_capacity(file, 256 * 1024).inspect_ok({
            let bar = bar.clone();
            move |chunk| bar.inc(chunk.len() as u64)
        });
        client
            .upload(id, &target, reqwest::Body::wrap_stream(counted))
            .await
            .map_err(explain)?;
        bar.finish_and_clear();
    }
    Ok(())
}

async fn download(client: &Client, id: &str, src: &str, dst: &Path) -> anyhow::Result<()> {
    let entry = client.stat_file(id, src).await.map_err(explain)?;
    let local_dir = tokio::fs::metadata(dst).await.is_ok_and(|m| m.is_dir());
    let target = if local_dir {
        dst.join(base_name(src))
    } else {
        dst.to_owned()
    };
    if entry.kind == FileKind::Dir {
        let response = client.download_archive(id, src).await.map_err(explain)?;
        let bar = progress(None, "downloading");
        let stream = response.bytes_stream().inspect_ok({
            let bar = bar.clone();
            move |chunk| bar.inc(chunk.len() as u64)
        });
        let reader = StreamReader::new(stream.map_err(std::io::Error::other));
        tokio::fs::create_dir_all(&target).await?;
        let into = target.clone();
        tokio::task::spawn_blocking(move || unpack(SyncIoBridge::new(reader), &into))
            .await?
            .with_context(|| format!("unpacking into {}", target.display()))?;
        bar.finish_and_clear();
    } else {
        let response = client.download(id, src).await.map_err(explain)?;
        let bar = progress(response.content_length(), "downloading");
        let mut file = tokio::fs::File::create(&target)
            .await
            .with_context(|| format!("cannot write {}", target.display()))?;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await?;
            bar.inc(chunk.len() as u64);
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        bar.finish_and_clear();
    }
    Ok(())
}

/// Unpacks a session's directory, keeping modes but never setuid, setgid or sticky bits: the
/// archive comes from inside a session, and whoever runs `berth cp` (often root) must not end
/// up with a setuid program of someone else's making.
fn unpack(archive: impl std::io::Read, into: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_mask(0o7000);
    archive.unpack(into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_keeps_modes_but_drops_setuid_setgid_and_sticky() {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, mode) in [("suid", 0o4755), ("sgid", 0o2750), ("plain", 0o640)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(2);
            header.set_mode(mode);
            header.set_cksum();
            builder.append_data(&mut header, name, &b"hi"[..]).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack(tar.as_slice(), dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(
            (mode("suid"), mode("sgid"), mode("plain")),
            (0o755, 0o750, 0o640)
        );
    }

    #[test]
    fn session_paths_and_local_paths_are_told_apart() {
        assert_eq!(
            parse("sabc123:/tmp/x"),
            Location::Session {
                id: "sabc123".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse("sabc123:"),
            Location::Session {
                id: "sabc123".into(),
                path: ".".into()
            }
        );
        assert_eq!(parse("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(parse("/tmp/a:b"), Location::Local("/tmp/a:b".into()));
        assert_eq!(parse("notes.txt"), Location::Local("notes.txt".into()));
    }
}
