//! The README's example: a counter actor, a bounded mailbox, a call.
//!
//! Run with `cargo run -p girder --example counter`.

use std::time::Duration;

use girder::{Actor, Ctx, Flow, Mailbox, Node, Overflow, Reply, SendError, Weight};

struct Counter(u64);

enum Msg {
    Add(u64),
    Get(Reply<u64>),
}
impl Weight for Msg {} // no heap data: weighs its size

impl Actor for Counter {
    type Msg = Msg;

    async fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<Self>) -> Flow {
        match msg {
            Msg::Add(n) => self.0 += n,
            Msg::Get(reply) => reply.send(self.0),
        }
        Flow::Continue
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder()
        .max_processes(100_000)
        .mailbox_budget_bytes(256 << 20)
        .default_mailbox(Mailbox::bounded(1024).overflow(Overflow::Backpressure))
        .build()?;

    let counter = node.spawn(Counter(0))?; // Err(SpawnError::ProcessLimit) past the limit
    match counter.try_send(Msg::Add(1)) {
        // never waits
        Ok(()) | Err(SendError::Full(_)) => {} // a full mailbox hands the message back
        Err(e) => return Err(e.into()),
    }
    counter.send(Msg::Add(1)).await?; // waits for room (backpressure)
    let n = counter.call(Msg::Get, Duration::from_millis(50)).await?; // reply via a one-shot slot
    println!("{n}");
    println!("{:?}", node.stats()); // counters: refusals, drops, expiries, kills
    Ok(())
}
