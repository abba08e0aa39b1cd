// The web UI in web/dist is embedded at compile time (api/web.rs); rebuild when it changes,
// including when it first appears after a build without it.
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
}
