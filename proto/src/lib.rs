//! Generated protobuf messages and gRPC services.
//!
//! `meta` holds eggroll-rs's own cluster messages; `proxy`, `transfer` and `core_meta`
//! are EggRoll's cross-party wire protocol, with EggRoll's package names and field numbers.
//! The generated code refers across packages by relative module paths, so the modules
//! nest exactly as the proto packages do; the short names below are re-exports.

#![allow(clippy::all, missing_docs, non_camel_case_types)]

/// Generated modules, nested as the proto packages are.
pub mod generated {
    pub mod eggroll {
        pub mod meta {
            tonic::include_proto!("eggroll.meta");
        }
    }
    pub mod com {
        pub mod webank {
            pub mod ai {
                pub mod eggroll {
                    pub mod api {
                        pub mod core {
                            tonic::include_proto!("com.webank.ai.eggroll.api.core");
                        }
                        pub mod networking {
                            pub mod proxy {
                                tonic::include_proto!("com.webank.ai.eggroll.api.networking.proxy");
                            }
                        }
                    }
                }
            }
            pub mod eggroll {
                pub mod core {
                    pub mod transfer {
                        tonic::include_proto!("com.webank.eggroll.core.transfer");
                    }
                }
            }
        }
    }
}

/// EggRoll's `com.webank.ai.eggroll.api.core` messages (Endpoint).
pub use generated::com::webank::ai::eggroll::api::core as core_meta;
/// EggRoll's cross-party `DataTransferService` and `RouteService`.
pub use generated::com::webank::ai::eggroll::api::networking::proxy;
/// EggRoll's `RollSiteHeader` and transfer messages.
pub use generated::com::webank::eggroll::core::transfer;
/// eggroll-rs cluster messages (stores, jobs, tasks, pair batches).
pub use generated::eggroll::meta;

pub mod push;

/// What a store type means to the rest of the system: kept on disk or not. Code outside the
/// storage engine says `PERSISTENT`, never the engine's name.
impl meta::StoreType {
    /// Kept on disk across sessions and restarts (the RocksDB engine, today).
    pub const PERSISTENT: Self = Self::Rocksdb;

    /// Whether tables of this type are kept on disk; anything but in-memory is.
    pub fn is_persistent(self) -> bool {
        self != Self::InMemory
    }
}
