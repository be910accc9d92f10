//! A server on its own runtime, for tests that drive it from their own thread (a
//! blocking client, or a client process).

// Each test file uses the parts it needs.
#![allow(dead_code)]

use girder::Node;
use girder_net::server::{Server, ServerConfig};

/// A node and a server on port 0, on a two-worker runtime of their own; shut down on
/// drop.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    _node: Node,
    server: Option<Server>,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    /// The port, as a string for command lines.
    pub port: String,
}

impl Fixture {
    pub fn start(cfg: ServerConfig) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (node, server) = rt.block_on(async {
            let node = Node::builder().build().unwrap();
            let server = Server::start(&node, ServerConfig { port: 0, ..cfg })
                .await
                .unwrap();
            (node, server)
        });
        let url = format!("redis://{}/", server.local_addr());
        let port = server.local_addr().port().to_string();
        Fixture {
            rt,
            _node: node,
            server: Some(server),
            url,
            port,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}
