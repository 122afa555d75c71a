//! Using the mapping as a library from a plain tokio program, without `fbpixel`'s runtime: read
//! Segment messages (NDJSON) from stdin, map each one, and print what your own router would send
//! to the Conversions API.
//!
//!     cargo run -q --example map_library < examples/segment-events.ndjson

use fbpixel::sinks::facebook_pixel::{FacebookPixelConfig, Outcome};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same settings a pipeline file's sink table holds.
    let settings: FacebookPixelConfig = toml::from_str(
        r#"
        pixel_id = "1234567890"
        standard_events = { "Signed Up" = "CompleteRegistration" }
        phone_country = "US"
        "#,
    )?;
    let mapper = settings.mapper().map_err(|problems| problems.join("\n"))?;
    // The samples are dated 2024-06-15; a fixed clock keeps them inside Meta's 7-day window.
    // A live router passes `chrono::Utc::now()` for each event instead.
    let now: chrono::DateTime<chrono::Utc> = "2024-06-15T12:00:00Z".parse()?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut mapped, mut skipped, mut rejected) = (0, 0, 0);
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        // The parser unescapes strings in place; the message borrows from this buffer.
        let mut line = line.into_bytes();
        let message = match mapper.parse(&mut line) {
            Ok(message) => message,
            Err(rejection) => {
                rejected += 1;
                eprintln!("rejected: {rejection}");
                continue;
            }
        };
        // `map` returns typed structs that borrow from `message`: inspect or batch them, then
        // serialize into the request body.
        let mapping = mapper.map(&message, now);
        match mapping.outcome {
            Outcome::Mapped(event) => {
                mapped += 1;
                println!(
                    "{:<22} value={:<8} {}",
                    event.event_name,
                    event
                        .custom_data
                        .value
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    serde_json::to_string(&event)?
                );
            }
            Outcome::Skipped(reason) => {
                skipped += 1;
                eprintln!("skipped: {reason}");
            }
            Outcome::Rejected(reason) => {
                rejected += 1;
                eprintln!("rejected: {reason}");
            }
        }
    }
    eprintln!("{mapped} mapped, {skipped} skipped, {rejected} rejected");
    Ok(())
}
