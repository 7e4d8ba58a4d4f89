//! The operator side: what server admins (`--admin-emails`) see of the cluster.

pub mod nodes;

use crate::feature::{Feature, none};

pub const FEATURE: Feature = Feature {
    name: "admin",
    api: |cfg| {
        cfg.service(nodes::list_nodes);
    },
    room: None,
    public: none,
};
