//! A smoke run against a real server: one operator bot accepts and completes calls, one headless
//! kiosk places a call and follows it to the end. With `--media` both negotiate real WebRTC media
//! with the server's SFU for the conversation and print what they received.
//!
//! ```sh
//! cargo run -p kiosk-client --example smoke -- http://127.0.0.1:8080 maria.rossi '<password>' '<kiosk token>' [--media]
//! ```

use std::time::Duration;

use kiosk_client::media::ClientOptions;
use kiosk_client::{describe_event, ws_url, HeadlessKiosk, OperatorBot, Policy};
use protocol::Event;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let media = args.iter().any(|a| a == "--media");
    args.retain(|a| a != "--media");
    let [server, username, password, kiosk_token] = args.as_slice() else {
        anyhow::bail!("usage: smoke SERVER_URL OPERATOR PASSWORD KIOSK_TOKEN [--media]");
    };
    let ws = ws_url(server)?;

    let token = OperatorBot::login(server, username, password).await?;
    let bot = OperatorBot::connect(
        &ws,
        &token,
        Policy::Accept {
            after: Duration::from_millis(500),
            talk: Some(Duration::from_secs(if media { 5 } else { 2 })),
            wrapup: Some(Duration::from_millis(500)),
        },
    )
    .await?;
    let bot = if media {
        bot.with_media(ClientOptions::default())
    } else {
        bot
    };
    bot.go_available().await?;
    let handle = bot.spawn();

    let mut kiosk = HeadlessKiosk::connect(&ws, kiosk_token, vec![]).await?;
    let call_id = kiosk.request_call("anagrafe", "it", None).await?;
    println!("kiosk {}: call {call_id}", kiosk.kiosk_id());
    let kiosk_media = if media {
        kiosk
            .session()
            .wait_for(
                Duration::from_secs(60),
                |e| matches!(e, Event::CallAssigned(a) if a.call_id == call_id),
            )
            .await?;
        println!("  assigned; negotiating media");
        Some(kiosk.start_media(ClientOptions::default()).await?)
    } else {
        None
    };
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
    if let Some(m) = kiosk_media {
        let s = m.stats();
        println!(
            "kiosk media: connected {} · received {} video and {} audio packets",
            s.connected || s.packets("video") > 0,
            s.packets("video"),
            s.packets("audio")
        );
    }
    handle.stop().await;
    kiosk.close().await;
    Ok(())
}
