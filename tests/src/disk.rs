//! A disk that can fill up: a small tmpfs, unmounted when dropped.

/// A tmpfs of `size` mounted at `dir` for the test's life: a disk that can fill up.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs at {}", dir.display());
        SmallDisk(dir.to_path_buf())
    }

    /// Fills what is left with a junk file; returns its path.
    pub fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let junk = self.0.join("junk");
        let mut f = std::fs::File::create(&junk).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        junk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
