//! Generates the gRPC client and server code from `proto/garrison/v1/*.proto` and the SPIFFE
//! Workload API (`proto/spiffe/workload.proto`, vendored unchanged) with protoc
//! (Debian package `protobuf-compiler`, installed by `scripts/install-deps.sh`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "proto/garrison/v1/enrollment.proto",
                "proto/garrison/v1/audit.proto",
                "proto/garrison/v1/sync.proto",
                "proto/spiffe/workload.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
