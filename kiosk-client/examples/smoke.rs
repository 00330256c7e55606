//! A smoke run against a real server: one operator bot accepts and completes calls, one headless
//! kiosk places a call and follows it to the end.
//!
//! ```sh
//! cargo run -p kiosk-client --example smoke -- http://127.0.0.1:8080 maria.rossi '<password>' '<kiosk token>'
//! ```

use std::time::Duration;

use kiosk_client::{describe_event, ws_url, HeadlessKiosk, OperatorBot, Policy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, username, password, kiosk_token] = args.as_slice() else {
        anyhow::bail!("usage: smoke SERVER_URL OPERATOR PASSWORD KIOSK_TOKEN");
    };
    let ws = ws_url(server)?;

    let token = OperatorBot::login(server, username, password).await?;
    let bot = OperatorBot::connect(
        &ws,
        &token,
        Policy::Accept {
            after: Duration::from_millis(500),
            talk: Some(Duration::from_secs(2)),
            wrapup: Some(Duration::from_millis(500)),
        },
    )
    .await?;
    bot.go_available().await?;
    let handle = bot.spawn();

    let mut kiosk = HeadlessKiosk::connect(&ws, kiosk_token, vec![]).await?;
    let call_id = kiosk.request_call("anagrafe", "it", None).await?;
    println!("kiosk {}: call {call_id}", kiosk.kiosk_id());
    let outcome = kiosk
        .follow_with(Duration::from_secs(60), |e| {
            println!("  {}", describe_event(e))
        })
        .await?;
    println!(
        "ended: {} (operator {:?})",
        outcome.reason, outcome.operator
    );

    let stats = handle
        .wait_until(Duration::from_secs(10), |s| {
            s.wrapups_done + s.wrapups_ended >= 1
        })
        .await?;
    println!("bot: {stats:?}");
    handle.stop().await;
    kiosk.close().await;
    Ok(())
}
