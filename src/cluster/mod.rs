//! The cluster: nodes sharing one Postgres form one service. Postgres is the bus
//! (LISTEN/NOTIFY, one dedicated listener connection per node) and the registry of nodes
//! (heartbeat leases). See docs/ARCHITECTURE.md, "Cluster".

pub mod bus;
pub mod hub;
pub mod listener;
pub mod node;

pub use bus::{Bus, Ephemeral};
pub use hub::{Hub, Room};
