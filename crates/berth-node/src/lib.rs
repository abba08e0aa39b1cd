//! `berth-node`: the part of Berth that runs on every node of a swarm (a `mode: global` service
//! in `deploy/stack.yml`, one process per node in `scripts/swarm-rig`).
//!
//! Control planes reach a node only through its relay ([`relay::Relay`]), authenticated by the
//! node key derived from the admin secret they share (`berth_server::reach::node_key`): the
//! node's engine for lifecycle (create, start, commit, push, remove), and its session containers'
//! addresses for agents, terminals and previews. Neither the engine nor the sessions are ever
//! exposed beyond the node otherwise. The node's firewall is Berth's as on a single host
//! (`berth_server::firewall`), so sessions reach no other session, node or control port.

pub mod relay;
