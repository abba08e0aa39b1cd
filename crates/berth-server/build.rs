// The web UI in web/dist is embedded at compile time (api/web.rs); rebuild when it changes.
// An empty dist is made when there is none, because Cargo counts a missing watched path as
// always changed (every build would recompile this crate), and an empty one still notices
// `npm run build` filling it later. Embedding nothing serves a note instead of the UI.
fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    // Best effort: a read-only checkout still builds, only without the rebuild trigger.
    let _ = std::fs::create_dir_all(&dist);
    println!("cargo:rerun-if-changed={}", dist.display());
}
