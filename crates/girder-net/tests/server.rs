//! The server through a real Redis client library (the `redis` crate).

use std::time::Duration;

use girder::Node;
use girder_net::server::{Server, ServerConfig};
use redis::AsyncCommands;

async fn start(cfg: ServerConfig) -> (Node, Server, redis::Client) {
    let node = Node::builder().build().unwrap();
    let server = Server::start(&node, ServerConfig { port: 0, ..cfg })
        .await
        .unwrap();
    let client = redis::Client::open(format!("redis://{}/", server.local_addr())).unwrap();
    (node, server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_and_counters() {
    let (_node, server, client) = start(ServerConfig::default()).await;
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    let _: () = c.set("k", "v").await.unwrap();
    let v: Option<String> = c.get("k").await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let n: i64 = c.incr("n", 5).await.unwrap();
    assert_eq!(n, 5);
    let n: i64 = c.exists(&["k", "n", "zz"]).await.unwrap();
    assert_eq!(n, 2);
    let n: i64 = c.del(&["k", "zz"]).await.unwrap();
    assert_eq!(n, 1);
    let e: redis::RedisResult<i64> = c.incr("n2", 1).await;
    assert!(e.is_ok());
    let _: () = c.set("s", "abc").await.unwrap();
    let e: redis::RedisResult<i64> = c.incr("s", 1).await;
    assert!(e.unwrap_err().to_string().contains("not an integer"));
    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert!(info.contains("connected_clients:1"), "{info}");
    assert!(server.stats().counters.commands >= 8);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_fan_out() {
    let (_node, server, client) = start(ServerConfig::default()).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut ps = client.get_async_pubsub().await.unwrap();
        ps.subscribe("news").await.unwrap();
        subs.push(ps);
    }
    let mut pat = client.get_async_pubsub().await.unwrap();
    pat.psubscribe("ne*").await.unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let n: i64 = c.publish("news", "hello").await.unwrap();
    assert_eq!(n, 4);
    for ps in &mut subs {
        let msg = tokio::time::timeout(Duration::from_secs(5), futures_next(ps))
            .await
            .unwrap();
        assert_eq!(msg.get_channel_name(), "news");
        assert_eq!(msg.get_payload::<String>().unwrap(), "hello");
    }
    let msg = tokio::time::timeout(Duration::from_secs(5), futures_next(&mut pat))
        .await
        .unwrap();
    assert_eq!(msg.get_pattern::<String>().unwrap(), "ne*");
    assert_eq!(server.stats().subscriptions, 4);
    server.shutdown().await;
}

async fn futures_next(ps: &mut redis::aio::PubSub) -> redis::Msg {
    use futures_util::StreamExt;
    ps.on_message().next().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_when_configured() {
    let cfg = ServerConfig {
        requirepass: Some("s3cret".into()),
        ..Default::default()
    };
    let (_node, server, _) = start(cfg).await;
    let bad = redis::Client::open(format!("redis://{}/", server.local_addr())).unwrap();
    let mut c = bad.get_multiplexed_async_connection().await.unwrap();
    let e: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
    assert!(e.unwrap_err().to_string().contains("NOAUTH"));
    let good = redis::Client::open(format!("redis://:s3cret@{}/", server.local_addr())).unwrap();
    let mut c = good.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    let wrong = redis::Client::open(format!("redis://:nope@{}/", server.local_addr())).unwrap();
    assert!(wrong.get_multiplexed_async_connection().await.is_err());
    assert!(server.stats().counters.auth_failures >= 1);
    server.shutdown().await;
}
