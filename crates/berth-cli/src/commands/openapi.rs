//! `berth openapi`: the API's OpenAPI document, as `GET /openapi.json` serves it, without a
//! running server: what clients are generated from (web/packages/sdk).

use std::io::Write;

pub fn run() -> anyhow::Result<()> {
    let (_, document) = berth_server::api::router_and_openapi();
    let text = document.to_pretty_json()?;
    match writeln!(std::io::stdout(), "{text}") {
        // A reader that stopped early (`| head`) is not a failure.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => Ok(written?),
    }
}
