//! The generated code for `proto/netward/v1`, and the encoded descriptor set
//! that server reflection serves (so grpcurl needs no .proto files).

/// Messages, clients and servers of package `netward.v1`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("netward.v1");
}

/// Every `netward.v1` file, encoded as a `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netward_descriptor.bin"));
