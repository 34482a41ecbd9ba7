//! Generates the gRPC service from `proto/shoal/v1/shoal.proto` with the vendored
//! protoc, so nothing needs to be installed by hand; and embeds the built
//! site (dashboard + browser worker) named by `SHOAL_EMBED_SITE`, so one
//! `shoal` file serves it from anywhere (`cargo xtask up` and `cargo xtask
//! build` set it; without it the binary serves a page saying how to build).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; the variable only tells prost-build where protoc is.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/shoal/v1/shoal.proto");
    // Byte fields as `bytes::Bytes`: task inputs are decoded as views of the request
    // buffer and travel to the workers without another copy.
    // Messages are encoded into a buffer reserved to their size (`src/grpc/codec.rs`).
    // The descriptor set serves gRPC reflection (`grpcurl list`).
    // The same set gives pbjson the messages it writes proto3 JSON for
    // (the CLI's `--json`, so its output is the API's, field for field).
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("shoal_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        .bytes(".")
        .codec_path("crate::grpc::codec::ShoalCodec")
        .compile_protos(&["proto/shoal/v1/shoal.proto"], &["proto"])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .out_dir(&out)
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".shoal.v1"])?;
    embed_site()
}

/// Writes `$OUT_DIR/site.rs`: every file of the site as `(path, bytes)`.
fn embed_site() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=SHOAL_EMBED_SITE");
    let mut files = Vec::new();
    if let Some(dir) = std::env::var_os("SHOAL_EMBED_SITE").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !dir.join("index.html").is_file() {
            return Err(format!("SHOAL_EMBED_SITE={} holds no index.html (build the site first)", dir.display()).into());
        }
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &dir, &mut files)?;
        files.sort();
    }
    let mut code = String::from(
        "/// The built site, by path relative to its root.\npub(super) static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(code, "    ({name:?}, include_bytes!({:?})),", path.display().to_string())?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("site.rs");
    std::fs::write(out, code)?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            out.push((rel, std::fs::canonicalize(&path)?));
        }
    }
    Ok(())
}
