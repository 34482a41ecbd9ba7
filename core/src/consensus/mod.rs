//! A generic BFT consensus state machine, sans-I/O.
//!
//! Shoal uses it so that several coordinators agree on each epoch's
//! settlement digest before anyone is paid; with one coordinator it runs
//! with a single prover. The behaviour and numbers follow the reference's
//! v2.1.0.4 machine (11 states, 37 transitions); unlike the reference,
//! nothing here blocks, sleeps or spawns: see [`machine`].
//!
//! - [`table`]: states, events, the transition table, timeouts, and
//!   Mermaid / Graphviz diagrams rendered from the table.
//! - [`machine`]: the machine itself.
//! - `sim` (feature `sim`): several machines on a simulated, partly
//!   Byzantine network.

pub mod machine;
#[cfg(feature = "sim")]
pub mod sim;
pub mod solo;
pub mod table;

pub use machine::{Action, ConsensusError, ConsensusMachine, Guard, Input, MachineConfig, Reply, Unique};
pub use table::{dot, markdown, mermaid, next_state, transitions, Event, State, Transition};
