//! `timestamp-api seed-file DEST LINE...`: writes a file once, for a program that then owns it.
//!
//! Redis Sentinel keeps its state (the primary it follows, the replicas and Sentinels it knows,
//! the epochs) by rewriting its own config file, so that file must be on a volume, writable,
//! and must exist before Sentinel starts; it must not be replaced afterwards, or a restart
//! would forget every failover. The images have no shell to copy a template into a volume
//! (docs/adr/0004-images-without-a-shell.md), so the compose `ha` profile and the Kubernetes
//! `redis-ha` component run this command, from the service's image, before each Sentinel
//! (docs/deployment.md, "High availability"). The lines come from the command line, where
//! compose and Kubernetes can put their variables into them. A command in a binary both
//! deployments already ship was chosen over a shell in an image (which ADR 0004 rules out) and
//! over a third image made only for this.
//!
//! If DEST exists, nothing happens. Otherwise the lines go to a temporary file in DEST's
//! directory (mode 0600), which is flushed to disk and renamed to DEST, and the directory is
//! flushed too: DEST is either absent or complete, even if the machine stops half-way, so a
//! later run never mistakes a half-written file for the owner's. The check and the rename are
//! not one atomic step; that is safe because each file has a single seeder that runs before
//! its owner starts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What `seed` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// DEST did not exist and now holds the lines.
    Written,
    /// DEST existed (whatever it holds) and was left alone.
    Kept,
}

/// Writes `lines`, each followed by a newline, to `dest` unless `dest` exists.
pub fn seed(dest: &Path, lines: &[String]) -> io::Result<Outcome> {
    // symlink_metadata: a dangling symbolic link is something in the way too.
    match fs::symlink_metadata(dest) {
        Ok(_) => return Ok(Outcome::Kept),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let name = dest.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", dest.display()),
        )
    })?;
    let directory = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary_name = name.to_os_string();
    temporary_name.push(format!(".seed-{}", std::process::id()));
    let temporary = directory.join(temporary_name);

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        for line in lines {
            file.write_all(line.as_bytes())?;
            file.write_all(b"\n")?;
        }
        file.sync_all()?;
        fs::rename(&temporary, dest)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    File::open(directory)?.sync_all()?;
    Ok(Outcome::Written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn writes_a_missing_file_once_and_then_keeps_what_its_owner_made_of_it() {
        let directory = tempfile::tempdir().unwrap();
        let dest = directory.path().join("sentinel.conf");
        let seeded = lines(&[
            "sentinel monitor m 10.0.0.11 6379 2",
            "sentinel known-replica m 10.0.0.12 6379",
        ]);

        assert_eq!(seed(&dest, &seeded).unwrap(), Outcome::Written);
        assert_eq!(
            fs::read_to_string(&dest).unwrap(),
            "sentinel monitor m 10.0.0.11 6379 2\nsentinel known-replica m 10.0.0.12 6379\n"
        );
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Only the file: no temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sentinel.conf"]);

        // Sentinel rewrote it after a failover; seeding again must not bring the old lines back.
        fs::write(&dest, "sentinel monitor m 10.0.0.12 6379 2\n").unwrap();
        assert_eq!(seed(&dest, &seeded).unwrap(), Outcome::Kept);
        assert_eq!(
            fs::read_to_string(&dest).unwrap(),
            "sentinel monitor m 10.0.0.12 6379 2\n"
        );
    }

    #[test]
    fn keeps_an_empty_file_and_a_dangling_link() {
        let directory = tempfile::tempdir().unwrap();
        let empty = directory.path().join("empty.conf");
        fs::write(&empty, "").unwrap();
        assert_eq!(seed(&empty, &lines(&["x"])).unwrap(), Outcome::Kept);
        assert_eq!(fs::read_to_string(&empty).unwrap(), "");

        let link = directory.path().join("link.conf");
        std::os::unix::fs::symlink(directory.path().join("nowhere"), &link).unwrap();
        assert_eq!(seed(&link, &lines(&["x"])).unwrap(), Outcome::Kept);
        assert!(!directory.path().join("nowhere").exists());
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let dest = directory.path().join("absent").join("sentinel.conf");
        assert_eq!(
            seed(&dest, &lines(&["x"])).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(fs::read_dir(directory.path()).unwrap().count(), 0);
    }
}
