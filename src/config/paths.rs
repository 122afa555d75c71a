//! Which files make up a configuration: files named one by one, and folders whose config files
//! are all taken (`--config` and `--config-dir`, as Vector's).

use std::path::{Path, PathBuf};

use super::ConfigError;
use super::format::Format;

/// Where a configuration is read from. The files of every folder come after the files named
/// one by one, each folder's in name order; all of them are merged as several files are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigPaths {
    /// Files, each in the format its extension names ([`Format::of`]).
    pub files: Vec<PathBuf>,
    /// Folders: every `.toml`, `.yaml`, `.yml` and `.json` file directly in each.
    pub dirs: Vec<PathBuf>,
}

impl ConfigPaths {
    /// Just these files.
    pub fn files(files: &[PathBuf]) -> Self {
        ConfigPaths {
            files: files.to_vec(),
            dirs: Vec::new(),
        }
    }

    /// Whether no file and no folder is named.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Every file to load, in order, and the folders that could not be listed or hold no
    /// config file. A file reached twice (named, and in a folder too) is loaded once, where it
    /// first comes: loaded twice, its every id would be reported as defined twice.
    pub fn expand(&self) -> (Vec<PathBuf>, Vec<ConfigError>) {
        let mut files = self.files.clone();
        let mut errors = Vec::new();
        for dir in &self.dirs {
            match files_in_dir(dir) {
                Ok(found) if found.is_empty() => {
                    errors.push(ConfigError::EmptyDir { dir: dir.clone() })
                }
                Ok(found) => files.extend(found),
                Err(error) => errors.push(ConfigError::ReadDir {
                    dir: dir.clone(),
                    error,
                }),
            }
        }
        let mut seen = Vec::with_capacity(files.len());
        files.retain(|file| {
            let key = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            let first = !seen.contains(&key);
            seen.push(key);
            first
        });
        (files, errors)
    }
}

/// The config files directly in `dir` (not in its subfolders), sorted by name: each regular
/// file, or link to one, whose extension is `.toml`, `.yaml`, `.yml` or `.json`.
///
/// Hidden names are skipped: editors' lock and backup files (`.#vector.toml`) and Kubernetes'
/// ConfigMap internals (`..data`) start with a dot, and the files a ConfigMap mounts are links
/// that are followed.
pub fn files_in_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .is_some();
        if known && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fbpixel-config-paths-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_folder_gives_its_config_files_by_name_and_nothing_else() {
        let dir = temp_dir("listing");
        for name in [
            "b.yaml",
            "a.toml",
            "c.json",
            "d.yml",
            "e.YAML",
            "notes.txt",
            "vector.toml.example",
            ".#a.toml",
            "README",
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        std::fs::create_dir(dir.join("sub.toml")).unwrap();
        std::fs::write(dir.join("sub.toml").join("inner.toml"), "").unwrap();
        let names: Vec<String> = files_in_dir(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.toml", "b.yaml", "c.json", "d.yml", "e.YAML"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_come_first_then_each_folder_and_a_file_reached_twice_is_loaded_once() {
        let one = temp_dir("one");
        let two = temp_dir("two");
        std::fs::write(one.join("z.toml"), "").unwrap();
        std::fs::write(one.join("a.yaml"), "").unwrap();
        std::fs::write(two.join("m.json"), "").unwrap();
        let named = two.join("m.json");
        let paths = ConfigPaths {
            files: vec![named.clone()],
            dirs: vec![one.clone(), two.clone()],
        };
        let (files, errors) = paths.expand();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(files, [named, one.join("a.yaml"), one.join("z.toml")]);
        std::fs::remove_dir_all(&one).unwrap();
        std::fs::remove_dir_all(&two).unwrap();
    }

    #[test]
    fn a_folder_without_config_files_or_that_cannot_be_read_is_named() {
        let empty = temp_dir("empty");
        std::fs::write(empty.join("notes.txt"), "").unwrap();
        let missing = empty.join("missing");
        let paths = ConfigPaths {
            files: Vec::new(),
            dirs: vec![empty.clone(), missing.clone()],
        };
        let (files, errors) = paths.expand();
        assert!(files.is_empty());
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(
            shown[0],
            format!(
                "{}: no .toml, .yaml, .yml or .json file in this folder",
                empty.display()
            )
        );
        assert!(
            shown[1].starts_with(&format!("{}: cannot read folder: ", missing.display())),
            "{shown:?}"
        );
        std::fs::remove_dir_all(&empty).unwrap();
    }
}
