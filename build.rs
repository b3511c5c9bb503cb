//! Embeds an rpath to libtorch so `target/*/trainerd` runs without LD_LIBRARY_PATH.
//!
//! Two entries: the directory setup.sh found (development builds), and
//! `$ORIGIN/../lib/trainerd`, where the Docker image installs the libraries.
//! Also reruns when TRAINERD_ORT_LIB (the onnxruntime library setup.sh
//! found, read by `crate::onnxruntime` through `option_env!`) changes.
//!
//! Also compiles `proto/inference.proto` (the Open Inference Protocol's gRPC
//! service) with protox, a protobuf compiler in Rust, into prost types and
//! tonic stubs in `OUT_DIR`, so no `protoc` is needed anywhere.
fn main() {
    compile_protos();
    println!("cargo:rerun-if-env-changed=TRAINERD_ORT_LIB");
    println!("cargo:rerun-if-env-changed=TRAINERD_TORCH_LIB");
    if let Ok(dir) = std::env::var("TRAINERD_TORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/trainerd");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // Rust links with --as-needed, which would drop libtorch_cuda (nothing
        // references its symbols directly; it registers the CUDA backend at load).
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn compile_protos() {
    let proto = "proto/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = match protox::compile([proto], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("{proto}: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // `bytes` fields as `bytes::Bytes`: raw tensors are sliced out of the
        // received buffer instead of copied, and cloned by reference count.
        .bytes(".")
        .compile_fds(fds)
    {
        panic!("generating the gRPC code from {proto}: {e}");
    }
}
