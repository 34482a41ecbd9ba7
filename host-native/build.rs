//! Generates the gRPC service from `proto/shoal.proto` with the vendored
//! protoc, so nothing needs to be installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; the variable only tells prost-build where protoc is.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/shoal.proto");
    // Byte fields as `bytes::Bytes`: task inputs are decoded as views of the request
    // buffer and travel to the workers without another copy.
    // Messages are encoded into a buffer reserved to their size (`src/grpc/codec.rs`).
    tonic_prost_build::configure()
        .bytes(".")
        .codec_path("crate::grpc::codec::ShoalCodec")
        .compile_protos(&["proto/shoal.proto"], &["proto"])?;
    Ok(())
}
