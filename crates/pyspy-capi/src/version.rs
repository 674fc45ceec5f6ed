//! The library's version, at run time (the header's `PYSPY_VERSION*` macros give it at compile
//! time; compare the two to detect a header/library mismatch).

use std::ffi::{c_char, CStr};

use crate::panic::ffi_boundary;

const VERSION: &CStr = {
    let bytes = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();
    match CStr::from_bytes_with_nul(bytes) {
        Ok(s) => s,
        Err(_) => panic!("the crate version has a NUL"),
    }
};

/// The library's version, `"MAJOR.MINOR.PATCH"` (equal to `PYSPY_VERSION` of the header it
/// was built with). A static string: never free it.
#[no_mangle]
pub extern "C" fn pyspy_version() -> *const c_char {
    ffi_boundary!({ VERSION.as_ptr() })
}

/// The library's version as one number, `MAJOR * 1000000 + MINOR * 1000 + PATCH` (the same
/// encoding as the header's `PYSPY_VERSION_NUMBER`).
#[no_mangle]
pub extern "C" fn pyspy_version_number() -> u32 {
    ffi_boundary!({ version_number(env!("CARGO_PKG_VERSION")) })
}

fn version_number(v: &str) -> u32 {
    let mut parts = v
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    major * 1_000_000 + minor * 1000 + patch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(version_number("0.1.0"), 1000);
        assert_eq!(version_number("1.22.333"), 1_022_333);
        assert_eq!(version_number("2.0.1-rc.1"), 2_000_001);
    }

    /// The committed header's version macros match Cargo.toml (`cargo xtask header` writes
    /// them; this catches a version bump without regenerating the header).
    #[test]
    fn header_macros_match_the_crate_version() {
        let header = include_str!("../../../include/pyspy.h");
        let v = env!("CARGO_PKG_VERSION");
        let mut parts = v.split('.');
        for (name, value) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&mut parts) {
            let line = format!("#define PYSPY_VERSION_{name} {value}\n");
            assert!(header.contains(&line), "include/pyspy.h lacks {line:?}");
        }
        assert!(header.contains(&format!("#define PYSPY_VERSION \"{v}\"\n")));
        assert!(header.contains(&format!(
            "#define PYSPY_VERSION_NUMBER {}\n",
            version_number(v)
        )));
    }
}
