//! Sink buffers: the memory queue's bound is kept by the channel in front of the sink
//! (`crate::component::Backlog`); the disk buffer is [`disk::DiskBuffer`]. Their settings are
//! [`crate::component::BufferConfig`].

pub mod disk;

use std::path::{Path, PathBuf};

/// The folder of the disk buffer of sink `id` under `data_dir`; an error that says what to set
/// when there is no `data_dir`.
pub fn disk_dir(data_dir: Option<&Path>, id: &str) -> Result<PathBuf, String> {
    crate::config::state_dir(data_dir, "buffer.type = \"disk\"", "buffers", id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_buffer_lives_under_data_dir_or_says_to_set_it() {
        let dir = disk_dir(Some(Path::new("/var/lib/x")), "capi").unwrap();
        assert_eq!(dir, Path::new("/var/lib/x/buffers/capi"));
        let e = disk_dir(None, "capi").unwrap_err();
        assert!(e.contains("data_dir"), "{e}");
    }
}
