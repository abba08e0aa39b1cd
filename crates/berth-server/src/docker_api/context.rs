//! Build contexts: the Dockerfile read out of the tar the CLI sends, and the spooled tar sent
//! on to the engine.

use std::{io::Read, path::Path};

use axum::body::Body;

use super::policy::DockerApiError;

/// The largest build context a session may send.
pub const MAX_BYTES: u64 = 2 << 30;
/// The largest Dockerfile read.
const MAX_DOCKERFILE: u64 = 1 << 20;

/// The Dockerfile the engine will build from: the context's entry at `name` (the `dockerfile`
/// parameter), or when none is named `Dockerfile` and then `dockerfile`, as the engine looks.
pub fn dockerfile(context: &std::fs::File, name: Option<&str>) -> Result<String, DockerApiError> {
    let mut head = [0u8; 2];
    let mut reader = context;
    reader
        .read_exact(&mut head)
        .map_err(|e| DockerApiError::Invalid(format!("the build context is not a tar: {e}")))?;
    if head == [0x1f, 0x8b] {
        return Err(DockerApiError::Invalid(
            "send the build context uncompressed (leave out --compress)".into(),
        ));
    }
    let candidates: Vec<String> = match name {
        Some(name) => vec![clean(name)],
        None => vec!["Dockerfile".into(), "dockerfile".into()],
    };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    read_entries(context, |path, entry| {
        if entry.header().entry_type().is_symlink() {
            links.push(path.clone());
        }
        if candidates.contains(&path) {
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(DockerApiError::Invalid(format!(
                    "{path} in the build context must be a regular file, not a link"
                )));
            }
            let mut text = String::new();
            entry
                .take(MAX_DOCKERFILE)
                .read_to_string(&mut text)
                .map_err(|e| DockerApiError::Invalid(format!("{path}: {e}")))?;
            found.push((path, text));
        }
        Ok(())
    })?;
    // Through a linked directory the engine would read another file than the one read here.
    if let Some(link) = links.iter().find(|link| {
        candidates
            .iter()
            .any(|c| c.starts_with(&format!("{link}/")))
    }) {
        return Err(DockerApiError::Invalid(format!(
            "the Dockerfile's directory {link} is a link in the build context; use a real one"
        )));
    }
    // The engine unpacks in order, so of two entries at one path the last is the file.
    candidates
        .iter()
        .find_map(|wanted| found.iter().rev().find(|(path, _)| path == wanted))
        .map(|(_, text)| text.clone())
        .ok_or_else(|| {
            DockerApiError::Invalid(format!(
                "no {} in the build context",
                candidates.join(" or ")
            ))
        })
}

fn read_entries(
    context: &std::fs::File,
    mut each: impl FnMut(String, &mut tar::Entry<'_, &std::fs::File>) -> Result<(), DockerApiError>,
) -> Result<(), DockerApiError> {
    let invalid = |e: std::io::Error| DockerApiError::Invalid(format!("build context: {e}"));
    let mut reader = context;
    std::io::Seek::rewind(&mut reader).map_err(invalid)?;
    let mut archive = tar::Archive::new(context);
    for entry in archive.entries().map_err(invalid)? {
        let mut entry = entry.map_err(invalid)?;
        let path = clean(&entry.path().map_err(invalid)?.to_string_lossy());
        each(path, &mut entry)?;
    }
    std::io::Seek::rewind(&mut reader).map_err(invalid)?;
    Ok(())
}

/// `./a/../Dockerfile` is `Dockerfile`: paths compared as the engine resolves them.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in Path::new(path).components() {
        match part {
            std::path::Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// The spooled context as a request body.
pub fn stream(context: std::fs::File) -> Body {
    Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(context),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    use super::*;

    /// A context of `(path, contents)` files, and `(path, target)` links.
    fn context(files: &[(&str, &str)], links: &[(&str, &str)]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        {
            let mut builder = tar::Builder::new(&mut file);
            for (path, target) in links {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target).unwrap();
            }
            for (path, contents) in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(contents.len() as u64);
                header.set_mode(0o644);
                builder
                    .append_data(&mut header, path, contents.as_bytes())
                    .unwrap();
            }
            builder.finish().unwrap();
        }
        file.flush().unwrap();
        file.rewind().unwrap();
        file
    }

    #[test]
    fn the_dockerfile_is_found_as_the_engine_finds_it() {
        let ctx = context(&[("app.txt", "x"), ("dockerfile", "FROM a")], &[]);
        assert_eq!(dockerfile(&ctx, None).unwrap(), "FROM a");
        let ctx = context(&[("Dockerfile", "FROM a"), ("dockerfile", "FROM b")], &[]);
        assert_eq!(dockerfile(&ctx, None).unwrap(), "FROM a");
        let ctx = context(&[("sub/Build", "FROM c")], &[]);
        assert_eq!(
            dockerfile(&ctx, Some("./sub/x/../Build")).unwrap(),
            "FROM c"
        );
        // Of two entries at one path the engine keeps the last.
        let ctx = context(
            &[("Dockerfile", "FROM a"), ("Dockerfile", "FROM evil")],
            &[],
        );
        assert_eq!(dockerfile(&ctx, None).unwrap(), "FROM evil");
        // The file is still whole for the engine afterwards.
        let mut ctx = context(&[("Dockerfile", "FROM a")], &[]);
        let expected = ctx.metadata().unwrap().len() as usize;
        dockerfile(&ctx, None).unwrap();
        let mut all = Vec::new();
        ctx.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), expected);
    }

    #[test]
    fn links_and_missing_or_compressed_dockerfiles_are_refused() {
        let ctx = context(&[], &[("Dockerfile", "elsewhere")]);
        assert!(dockerfile(&ctx, None).is_err());
        let ctx = context(&[("sub/Dockerfile", "FROM a")], &[("sub", "other")]);
        assert!(dockerfile(&ctx, Some("sub/Dockerfile")).is_err());
        let ctx = context(&[("README", "x")], &[]);
        let err = dockerfile(&ctx, None).unwrap_err().to_string();
        assert!(err.contains("no Dockerfile or dockerfile"), "{err}");
        let mut gz = tempfile::tempfile().unwrap();
        gz.write_all(&[0x1f, 0x8b, 8, 0]).unwrap();
        gz.rewind().unwrap();
        let err = dockerfile(&gz, None).unwrap_err().to_string();
        assert!(err.contains("uncompressed"), "{err}");
    }
}
