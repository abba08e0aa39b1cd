//! Folding a snapshot's own overlay layers into one, for compaction: every hibernation adds a
//! layer, and the engine refuses an image deeper than 125.
//!
//! Layers are directories as the engine's overlay2 driver keeps them: a deleted path is a
//! character device 0/0 (a *whiteout*), and a directory that hides what the layers below hold
//! at its path carries the `trusted.overlay.opaque` attribute. Applying the layers bottom-up to
//! an empty directory, with those two rules, gives one layer that shows the same tree over the
//! same base. Files are copied by `cp -a` (ownership, modes, times, hard links, devices and
//! extended attributes as the engine's own layer copy keeps them); what the rules decide, this
//! module does itself, so the result never depends on how `cp` treats `trusted.` attributes.

use std::{
    fs, io,
    os::unix::fs::{FileTypeExt, MetadataExt},
    path::{Path, PathBuf},
    process::Command,
};

const OPAQUE: &str = "trusted.overlay.opaque";

/// Applies `layers` (lowest first) to `into`, the empty upper directory of a container made
/// from the layers' base.
pub fn merge_layers(layers: &[PathBuf], into: &Path) -> io::Result<()> {
    for layer in layers {
        let mut opaque = Vec::new();
        clear_replaced(layer, into, &mut opaque)?;
        let copied = Command::new("cp")
            .arg("-a")
            .arg("--remove-destination")
            .arg(layer.join("."))
            .arg(into)
            .output()?;
        if !copied.status.success() {
            return Err(io::Error::other(format!(
                "copying layer {}: {}",
                layer.display(),
                String::from_utf8_lossy(&copied.stderr).trim()
            )));
        }
        for dir in opaque {
            set_opaque(&dir)?;
        }
    }
    Ok(())
}

/// Removes from `into` what `layer` replaces rather than merges with (whatever sits where the
/// layer has a whiteout, an opaque directory, or an entry of another kind), and notes the
/// directories that must be opaque once copied: the layer's own opaque ones, and those that
/// replace a whiteout (what the base holds there stays hidden). Never follows a link in
/// `into`: a directory of the layer that meets anything but a directory there replaces it
/// before anything is copied under it.
fn clear_replaced(layer: &Path, into: &Path, opaque: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(layer)? {
        let entry = entry?;
        let source = entry.path();
        let target = into.join(entry.file_name());
        let kind = entry.file_type()?;
        let existing = fs::symlink_metadata(&target).ok();
        if kind.is_dir() {
            let is_opaque = is_opaque(&source)?;
            match existing {
                Some(meta) if meta.is_dir() && !is_opaque => {
                    clear_replaced(&source, &target, opaque)?;
                }
                Some(meta) => {
                    remove(&target, meta.is_dir())?;
                    if is_opaque || is_whiteout(&meta) {
                        opaque.push(target);
                    }
                }
                None if is_opaque => opaque.push(target),
                None => {}
            }
        } else if let Some(meta) = existing {
            remove(&target, meta.is_dir())?;
        }
    }
    Ok(())
}

fn remove(path: &Path, is_dir: bool) -> io::Result<()> {
    if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    let mut value = [0u8; 1];
    match rustix::fs::lgetxattr(dir, OPAQUE, &mut value) {
        Ok(read) => Ok(read == 1 && value[0] == b'y'),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP | rustix::io::Errno::RANGE) => {
            Ok(false)
        }
        Err(err) => Err(err.into()),
    }
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    rustix::fs::lsetxattr(dir, OPAQUE, b"y", rustix::fs::XattrFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A character device 0/0: overlay's whiteout.
    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }

    fn write(root: &Path, path: &str, content: &str) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    /// The tree as `{path: what}`, whiteouts and opaque markers included.
    fn tree(root: &Path) -> BTreeMap<String, String> {
        let mut found = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.strip_prefix(root).unwrap().display().to_string();
                let meta = fs::symlink_metadata(&path).unwrap();
                let what = if is_whiteout(&meta) {
                    "whiteout".to_owned()
                } else if meta.is_dir() {
                    pending.push(path.clone());
                    if is_opaque(&path).unwrap() {
                        "opaque dir".to_owned()
                    } else {
                        "dir".to_owned()
                    }
                } else if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else {
                    fs::read_to_string(&path).unwrap()
                };
                found.insert(name, what);
            }
        }
        found
    }

    /// Whiteouts and `trusted.` attributes need root, as the engine's own layers do (and as
    /// every test of the real engine does).
    #[test]
    fn later_layers_win_and_deletions_stay_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, third, merged) = (
            dir.path().join("1"),
            dir.path().join("2"),
            dir.path().join("3"),
            dir.path().join("merged"),
        );
        for layer in [&first, &second, &third, &merged] {
            fs::create_dir(layer).unwrap();
        }
        // 1: adds files and a directory, deletes a base file.
        write(&first, "home/a.txt", "one");
        write(&first, "home/d/kept.txt", "kept");
        write(&first, "home/gone/x.txt", "x");
        fs::create_dir_all(first.join("etc")).unwrap();
        whiteout(&first.join("etc/motd"));
        // 2: changes a file, deletes one of 1's files and one of 1's directories, replaces
        // a directory wholesale (opaque), and brings back the deleted base file as a directory.
        write(&second, "home/a.txt", "two");
        fs::create_dir_all(second.join("home/d")).unwrap();
        whiteout(&second.join("home/d/kept.txt"));
        whiteout(&second.join("home/gone"));
        write(&second, "home/fresh/new.txt", "new");
        set_opaque(&second.join("home/fresh")).unwrap();
        fs::create_dir_all(second.join("etc/motd")).unwrap();
        // 3: a file in a directory 1 made, and a link.
        write(&third, "home/d/late.txt", "late");
        std::os::unix::fs::symlink("/etc/passwd", third.join("home/link")).unwrap();

        merge_layers(&[first, second, third], &merged).unwrap();
        let expected: BTreeMap<String, String> = [
            ("etc", "dir"),
            ("etc/motd", "opaque dir"),
            ("home", "dir"),
            ("home/a.txt", "two"),
            ("home/d", "dir"),
            ("home/d/kept.txt", "whiteout"),
            ("home/d/late.txt", "late"),
            ("home/fresh", "opaque dir"),
            ("home/fresh/new.txt", "new"),
            ("home/gone", "whiteout"),
            ("home/link", "-> /etc/passwd"),
        ]
        .into_iter()
        .map(|(path, what)| (path.to_owned(), what.to_owned()))
        .collect();
        assert_eq!(tree(&merged), expected);
    }

    #[test]
    fn a_link_in_a_lower_layer_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let (first, second, merged) = (
            dir.path().join("1"),
            dir.path().join("2"),
            dir.path().join("merged"),
        );
        for path in [&outside, &first, &second, &merged] {
            fs::create_dir(path).unwrap();
        }
        // 1 makes `work` a link out of the layer; 2 makes it a directory with a file.
        std::os::unix::fs::symlink(&outside, first.join("work")).unwrap();
        write(&second, "work/file.txt", "inside");
        merge_layers(&[first, second], &merged).unwrap();
        assert!(fs::read_dir(&outside).unwrap().next().is_none());
        assert_eq!(
            fs::read_to_string(merged.join("work/file.txt")).unwrap(),
            "inside"
        );
    }
}
