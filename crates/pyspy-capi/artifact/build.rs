//! Gives `libpyspy.so` its SONAME, so programs linked against it load `libpyspy.so.0` (the ABI
//! major version) at run time, the way `cargo xtask install` lays the files out.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpyspy.so.0");
    }
}
