//! Builds bundles for tests: the sample app at a given version, or hand-made zips (hostile
//! entries, symlinks, hooks).

use std::io::Write;
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

pub fn sample_app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample-app")
}

/// An entry of a hand-made zip.
#[derive(Debug, Clone)]
pub enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Dir(&'a str),
}

/// Writes a zip with exactly `entries` to `dir/name`.
pub fn zip(dir: &Path, name: &str, entries: &[Entry<'_>]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create zip");
    let mut writer = zip::ZipWriter::new(file);
    for entry in entries {
        match entry {
            Entry::File(name, content, mode) => {
                let options = SimpleFileOptions::default().unix_permissions(*mode);
                writer.start_file(*name, options).expect("start file");
                writer.write_all(content).expect("write");
            }
            Entry::Symlink(name, target) => {
                writer
                    .add_symlink(*name, *target, SimpleFileOptions::default())
                    .expect("symlink");
            }
            Entry::Dir(name) => {
                writer
                    .add_directory(*name, SimpleFileOptions::default())
                    .expect("dir");
            }
        }
    }
    writer.finish().expect("finish zip");
    path
}

/// The sample app at `version`, plus `extra` entries, zipped into `dir`.
pub fn sample(dir: &Path, version: &str, extra: &[Entry<'_>]) -> PathBuf {
    let app = sample_app_dir();
    let application = std::fs::read(app.join("application.py")).expect("sample app");
    let procfile = std::fs::read(app.join("Procfile")).expect("Procfile");
    let version_line = format!("{version}\n");
    let mut entries = vec![
        Entry::File("application.py", &application, 0o755),
        Entry::File("Procfile", &procfile, 0o644),
        Entry::File("VERSION", version_line.as_bytes(), 0o644),
    ];
    // An extra entry with a default entry's name replaces it (e.g. a broken Procfile).
    entries.retain(|default| !extra.iter().any(|e| entry_name(e) == entry_name(default)));
    entries.extend_from_slice(extra);
    zip(dir, &format!("sample-{version}.zip"), &entries)
}

fn entry_name<'a>(entry: &Entry<'a>) -> &'a str {
    match entry {
        Entry::File(name, ..) | Entry::Symlink(name, _) | Entry::Dir(name) => name,
    }
}
