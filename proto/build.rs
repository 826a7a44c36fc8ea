//! Compiles the .proto files once, with a vendored protoc so no hand-installed protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let protos = [
        "proto/eggroll/meta.proto",
        "proto/basic-meta.proto",
        "proto/proxy.proto",
        "proto/transfer.proto",
    ];
    // Packet bodies as `Bytes`: roll-sites relay megabyte bodies without copying them.
    tonic_prost_build::configure()
        .bytes(".com.webank.ai.eggroll.api.networking.proxy.Data.value")
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
