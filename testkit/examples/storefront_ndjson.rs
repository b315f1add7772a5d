//! Prints seeded storefront traffic (the shared generator, `testkit::storefront`) as
//! NDJSON, one event a line, ready for an edge agent's batch endpoint:
//!
//! ```text
//! cargo run -p testkit --example storefront_ndjson -- --events 500 [--users 500] [--products 40] [--seed 7]
//! ```
//!
//! The events carry no timestamps (the agent stamps the time it receives them), and their
//! ids belong to a run taken from the clock, so that two invocations with one seed send
//! the same shoppers' actions under ids a de-duplicating consumer counts again.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::storefront::Storefront;

struct Options {
    events: u64,
    users: u64,
    products: u64,
    seed: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        events: 1_000,
        users: 500,
        products: 40,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |what: &str| -> Result<u64, String> {
            value
                .parse()
                .map_err(|e| format!("{what}: {e} ({value:?})"))
        };
        match flag.as_str() {
            "--events" => options.events = number("--events")?,
            "--users" => options.users = number("--users")?,
            "--products" => options.products = number("--products")?,
            "--seed" => options.seed = number("--seed")?,
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --events, --users, --products, --seed"
                ))
            }
        }
    }
    Ok(options)
}

fn main() -> std::process::ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("storefront_ndjson: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut shop =
        Storefront::new(run, 0, options.seed).with_shape(options.users, options.products);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..options.events {
        let event = shop.next_event();
        if out
            .write_all(&event.body)
            .and_then(|()| out.write_all(b"\n"))
            .is_err()
        {
            // The reader went away (a closed pipe): nothing left to print for.
            return std::process::ExitCode::SUCCESS;
        }
    }
    let _ = out.flush();
    std::process::ExitCode::SUCCESS
}
