//! The node registry: who registered, their resources, and who has gone quiet.

use eggroll_proto::meta::{NodeHeartbeat, NodeInfo, NodeRegistration, ServerNode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A node manager is serving.
pub const ALIVE: &str = "ALIVE";
/// A node manager missed its heartbeats; no new session is placed on it.
pub const LOST: &str = "LOST";

/// One registered node.
#[derive(Clone, Debug)]
pub struct Node {
    /// What the node manager registered.
    pub registration: NodeRegistration,
    /// Its last heartbeat.
    pub heartbeat: NodeHeartbeat,
    /// When it was last heard from; `None`: not since this cluster manager started.
    pub last_seen: Option<Instant>,
    /// ALIVE or LOST.
    pub status: &'static str,
}

impl Node {
    /// The node manager's address.
    pub fn address(&self) -> String {
        format!("{}:{}", self.registration.host, self.registration.port)
    }

    /// The node as a `NodeInfo` for listings.
    pub fn info(&self) -> NodeInfo {
        let r = &self.registration;
        NodeInfo {
            node: Some(ServerNode {
                id: r.node_id,
                host: r.host.clone(),
                port: r.port,
                status: self.status.into(),
            }),
            cpus: r.cpus,
            memory_bytes: r.memory_bytes,
            load: self.heartbeat.load,
            memory_available_bytes: self.heartbeat.memory_available_bytes,
            running_processors: self.heartbeat.running_processors,
            last_seen_ms: self
                .last_seen
                .map_or(u64::MAX, |t| t.elapsed().as_millis() as u64),
            data_dir: r.data_dir.clone(),
        }
    }
}

/// Every node ever registered, by id.
#[derive(Default)]
pub struct Nodes {
    nodes: BTreeMap<u64, Node>,
}

impl Nodes {
    /// Known nodes from the durable records; LOST until they heartbeat again.
    pub fn restore(registrations: Vec<NodeRegistration>) -> Self {
        let nodes = registrations
            .into_iter()
            .map(|r| {
                (
                    r.node_id,
                    Node {
                        registration: r,
                        heartbeat: NodeHeartbeat::default(),
                        last_seen: None,
                        status: LOST,
                    },
                )
            })
            .collect();
        Self { nodes }
    }

    /// Records a registration; the node is alive from now.
    pub fn register(&mut self, r: NodeRegistration) {
        let node = Node {
            heartbeat: NodeHeartbeat {
                node_id: r.node_id,
                ..Default::default()
            },
            registration: r,
            last_seen: Some(Instant::now()),
            status: ALIVE,
        };
        self.nodes.insert(node.registration.node_id, node);
    }

    /// Records a heartbeat; false if the node is unknown or was lost (it must register again).
    pub fn heartbeat(&mut self, hb: NodeHeartbeat) -> bool {
        match self.nodes.get_mut(&hb.node_id) {
            Some(node) if node.status == ALIVE => {
                node.heartbeat = hb;
                node.last_seen = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Marks nodes silent for longer than `timeout` as LOST; returns the newly lost.
    pub fn expire(&mut self, timeout: Duration) -> Vec<Node> {
        let mut lost = Vec::new();
        for node in self.nodes.values_mut() {
            let silent = node.last_seen.is_none_or(|t| t.elapsed() > timeout);
            if node.status == ALIVE && silent {
                node.status = LOST;
                lost.push(node.clone());
            }
        }
        lost
    }

    /// Live nodes, by id.
    pub fn alive(&self) -> Vec<Node> {
        self.nodes
            .values()
            .filter(|n| n.status == ALIVE)
            .cloned()
            .collect()
    }

    /// A node by id.
    pub fn get(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// Every node, for listings.
    pub fn list(&self) -> Vec<NodeInfo> {
        self.nodes.values().map(Node::info).collect()
    }
}
