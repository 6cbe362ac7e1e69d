//! Compiles `proto/netward/v1/*.proto` with protox (pure Rust, so no `protoc`
//! is needed to build, in Docker or anywhere else), generates the tonic/prost
//! code, and writes the encoded descriptor set that reflection serves.

use std::path::PathBuf;
use std::{env, fs};

use prost::Message as _;

/// Messages with secret fields; keep in step with `src/proto.rs`.
const SECRET_MESSAGES: [&str; 3] = [
    ".netward.v1.ResolvedCredential",
    ".netward.v1.CreateCredentialRequest",
    ".netward.v1.UpdateCredentialRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): cargo reuses a compiled build script
    // across checkouts in other folders (CI clones into a fresh one and
    // shares the target directory), and a path baked in at compile time
    // would point at whichever checkout compiled it first.
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let package_dir = proto_root.join("netward/v1");
    let mut files: Vec<PathBuf> = fs::read_dir(&package_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", package_dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("netward_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Messages that carry SNMP secrets get a redacting Debug (in
        // src/proto.rs), so no `{:?}` can ever log a community or key.
        .skip_debug(SECRET_MESSAGES)
        .compile_fds(fds)?;
    Ok(())
}
