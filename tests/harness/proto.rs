//! Protobuf decoders for the tests, generated at build time (`tests/build.rs`) from
//! `crates/pyspy-core/proto/*.proto`.

#![allow(missing_docs, clippy::all)]

/// `perftools.profiles`.
pub mod pprof {
    include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
}

/// `push.v1`.
pub mod pyroscope {
    include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));
}

/// `opentelemetry.proto.*`.
pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.rs"
                ));
            }
        }
        pub mod profiles {
            pub mod v1development {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.profiles.v1development.rs"
                ));
            }
        }
    }
}
