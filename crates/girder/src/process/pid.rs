use std::fmt;

/// Identity of the node a [`Pid`] belongs to.
///
/// Every [`Node`](crate::Node) draws a fresh id when it is built. It is the room DESIGN.md
/// asks for: when nodes talk to each other, a pid names the node that owns it, while
/// local pids keep comparing and hashing as three small integers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The raw number of this node id.
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

/// An untyped process identifier: the node, a process-table index and a generation.
///
/// A slot of the process table is reused after its process exits, but its generation
/// is bumped first, so a stale `Pid` held after the exit never reaches the later
/// process that lives in the same slot: sends, links and monitors through it see
/// "no such process".
///
/// Pids are `Copy`, cheap to compare and hash, and print as `<node.index.generation>`,
/// like the BEAM's `<0.84.0>`.
///
/// # Examples
///
/// ```
/// # use girder::{Node, Actor, Ctx, Flow};
/// # struct Idle;
/// # impl Actor for Idle { type Msg = (); async fn handle(&mut self, _: (), _: &mut Ctx<Self>) -> Flow { Flow::Continue } }
/// # #[tokio::main] async fn main() {
/// let node = Node::builder().build().unwrap();
/// let a = node.spawn(Idle).unwrap();
/// let b = node.spawn(Idle).unwrap();
/// assert_ne!(a.pid(), b.pid());
/// assert_eq!(a.pid().node(), node.id());
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid {
    pub(crate) node: NodeId,
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Pid {
    /// The node this process belongs to.
    pub fn node(self) -> NodeId {
        self.node
    }

    /// The slot of the process table this process occupies.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many earlier processes used the same slot.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}.{}>", self.node.0, self.index, self.generation)
    }
}
