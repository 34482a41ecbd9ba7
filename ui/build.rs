//! Generates the gRPC-web client from the coordinator's `shoal.proto` (only
//! for wasm32: the native build of this crate is empty).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../host-native/proto/shoal/v1/shoal.proto");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        return Ok(());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; the variable only tells prost-build where protoc is.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_protos(&["../host-native/proto/shoal/v1/shoal.proto"], &["../host-native/proto"])?;
    Ok(())
}
