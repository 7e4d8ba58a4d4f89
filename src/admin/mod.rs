//! The operator side: what server admins (`--admin-emails`) see of the cluster.

pub mod nodes;

use crate::feature::Feature;
use crate::routes;

pub const FEATURE: Feature = Feature::new("admin", routes! { nodes::list_nodes });
