//! Generates the tests' own protobuf decoders from the `.proto` files the library's encoders
//! are generated from (`crates/pyspy-core/proto/`), so requests are decoded by code the
//! library did not write.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/pyspy-core/proto");
    let files: Vec<PathBuf> = [
        "profile.proto",
        "pyroscope_push.proto",
        "otlp/profiles.proto",
    ]
    .iter()
    .map(|f| root.join(f))
    .collect();
    println!("cargo:rerun-if-changed={}", root.display());
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&root]).expect("compiling the .proto files");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(descriptors)
        .expect("generating the decoders");
}
