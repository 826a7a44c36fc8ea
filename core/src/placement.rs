//! Where partitions live: spread over nodes, then over a session's processors on each node.
//!
//! The cluster manager places persistent stores with these rules and the roll-pair client
//! places in-memory ones, so both agree without asking each other.

use crate::error::{CoreError, Result};
use eggroll_proto::meta::{Partition, Processor};

/// Spreads `partitions` over `nodes` round-robin: partition `p` goes to node
/// `nodes[p % n]` with rank `p / n` among that node's partitions. `nodes` is sorted first.
pub fn spread(nodes: &[u64], partitions: u32) -> Result<Vec<Partition>> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return Err(CoreError::InvalidArgument(
            "no node to place partitions on: start a node manager and check `eggroll node list`"
                .into(),
        ));
    }
    let n = nodes.len() as u32;
    Ok((0..partitions)
        .map(|p| Partition {
            id: p,
            server_node_id: nodes[(p % n) as usize],
            rank_in_node: p / n,
            ..Default::default()
        })
        .collect())
}

/// Fills in which of the session's `processors` serves each partition: the processor of
/// rank `rank_in_node % k` among the `k` processors of the partition's node, by id.
pub fn assign(partitions: &mut [Partition], processors: &[Processor]) -> Result<()> {
    for part in partitions.iter_mut() {
        let mut on_node: Vec<&Processor> = processors
            .iter()
            .filter(|pr| pr.server_node_id == part.server_node_id)
            .collect();
        if on_node.is_empty() {
            return Err(CoreError::InvalidArgument(format!(
                "partition {} lives on node {}, which serves no processor in this session; \
                 the node may be lost or was not part of the session (check `eggroll node list`)",
                part.id, part.server_node_id
            )));
        }
        on_node.sort_by_key(|pr| pr.id);
        let pr = on_node[part.rank_in_node as usize % on_node.len()];
        part.processor_id = pr.id;
        part.endpoint = pr.command_endpoint.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_then_assigns() {
        assert!(spread(&[], 4).is_err());
        let mut parts = spread(&[9, 3], 5).unwrap();
        let nodes: Vec<_> = parts.iter().map(|p| p.server_node_id).collect();
        assert_eq!(nodes, [3, 9, 3, 9, 3]);
        let procs: Vec<Processor> = [(1, 3), (2, 3), (3, 9), (4, 9)]
            .iter()
            .map(|&(id, node)| Processor {
                id,
                server_node_id: node,
                command_endpoint: format!("h:{id}"),
                ..Default::default()
            })
            .collect();
        assign(&mut parts, &procs).unwrap();
        let owners: Vec<_> = parts.iter().map(|p| p.processor_id).collect();
        assert_eq!(owners, [1, 3, 2, 4, 1]);
        assert_eq!(parts[1].endpoint, "h:3");
        let err = assign(&mut parts, &procs[..2]).unwrap_err().to_string();
        assert!(err.contains("node 9"), "{err}");
    }
}
