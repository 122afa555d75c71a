//! Where every command reads its pipeline config: `--config FILE`, `--config-dir DIR`, or, when
//! the command line names neither, the environment, as Vector's `VECTOR_CONFIG` and
//! `VECTOR_CONFIG_DIR`.

use std::path::PathBuf;

use crate::config::ConfigPaths;

/// Files, comma-separated, read when the command line names no config.
pub const CONFIG_VAR: &str = "FBPIXEL_CONFIG";
/// Folders, comma-separated, read when the command line names no config.
pub const CONFIG_DIR_VAR: &str = "FBPIXEL_CONFIG_DIR";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Pipeline config file, in TOML, YAML (.yaml, .yml) or JSON (.json) as its extension tells;
    /// several are merged (repeatable, or comma-separated) [env: FBPIXEL_CONFIG, read when
    /// neither --config nor --config-dir is given]
    #[arg(
        long = "config",
        short = 'c',
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub config: Vec<PathBuf>,
    /// Folder whose .toml, .yaml, .yml and .json files (not its subfolders') are all merged, in
    /// name order; repeatable, and combines with --config [env: FBPIXEL_CONFIG_DIR, as
    /// FBPIXEL_CONFIG]
    #[arg(
        long = "config-dir",
        short = 'C',
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub config_dir: Vec<PathBuf>,
}

impl ConfigArgs {
    /// The files and folders to load: `files` (validate's positional ones) and the options,
    /// or else those the environment names through `env`. An error when none is named.
    pub fn paths(
        &self,
        files: &[PathBuf],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<ConfigPaths> {
        let mut paths = ConfigPaths {
            files: files.iter().chain(&self.config).cloned().collect(),
            dirs: self.config_dir.clone(),
        };
        // The command line wins whole: a file given there must not be merged with another
        // config left in the environment (a service's, say) that the user did not mean.
        if paths.is_empty() {
            paths.files = split_list(env(CONFIG_VAR));
            paths.dirs = split_list(env(CONFIG_DIR_VAR));
        }
        if paths.is_empty() {
            anyhow::bail!(
                "no config given: pass --config FILE or --config-dir DIR, or set {CONFIG_VAR} \
                 (vector.yaml.example and vector.toml.example are starting points)"
            );
        }
        Ok(paths)
    }
}

/// A comma-separated list, as `--config a.toml,b.yaml` takes it; empty items (a trailing comma,
/// an empty variable) are none.
fn split_list(value: Option<String>) -> Vec<PathBuf> {
    value
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|item| !item.is_empty())
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            CONFIG_VAR => Some("a.toml,,b.yaml,".into()),
            CONFIG_DIR_VAR => Some("conf.d".into()),
            _ => None,
        }
    }

    fn args(config: &[&str], config_dir: &[&str]) -> ConfigArgs {
        ConfigArgs {
            config: config.iter().map(PathBuf::from).collect(),
            config_dir: config_dir.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn the_environment_is_read_only_when_the_command_line_names_no_config() {
        let paths = args(&[], &[]).paths(&[], &env).unwrap();
        assert_eq!(
            paths.files,
            [PathBuf::from("a.toml"), PathBuf::from("b.yaml")]
        );
        assert_eq!(paths.dirs, [PathBuf::from("conf.d")]);

        for given in [args(&["x.json"], &[]), args(&[], &["dir"])] {
            let paths = given.paths(&[], &env).unwrap();
            assert_eq!(paths.files, given.config);
            assert_eq!(paths.dirs, given.config_dir);
        }
        let paths = args(&[], &[])
            .paths(&[PathBuf::from("v.yml")], &env)
            .unwrap();
        assert_eq!(paths.files, [PathBuf::from("v.yml")]);
        assert!(paths.dirs.is_empty());
    }

    #[test]
    fn no_config_anywhere_is_an_error_saying_how_to_give_one() {
        let none = |_: &str| None;
        let empty = |_: &str| Some(String::new());
        for env in [&none as &dyn Fn(&str) -> Option<String>, &empty] {
            let e = args(&[], &[]).paths(&[], env).unwrap_err().to_string();
            assert!(
                e.starts_with(
                    "no config given: pass --config FILE or --config-dir DIR, or set FBPIXEL_CONFIG"
                ),
                "{e}"
            );
        }
    }
}
