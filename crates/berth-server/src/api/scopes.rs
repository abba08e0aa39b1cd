//! Which scope a request of the main API needs (`berth_proto::token::Scope`). Decided from
//! the method and the path alone, before any handler runs, so a route cannot forget it: a path
//! this does not know needs full access, which scoped tokens never have.

use axum::http::Method;
use berth_proto::token::Scope;

/// The scope `method path` needs; `None`: full access (a user's login token, the admin's).
pub fn needed(method: &Method, path: &str) -> Option<Scope> {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|part| !part.is_empty())
        .collect();
    let session_scope = |reads| {
        if reads {
            Scope::SessionsRead
        } else {
            Scope::SessionsWrite
        }
    };
    if !path.starts_with("/api/v1/") {
        // Seed 004's lab routes; everything else (E2B, seed 003) needs full access.
        return matches!(parts.first(), Some(&"judge" | &"agent"))
            .then_some(Scope::Labs)
            .filter(|_| path.starts_with("/judge/") || path.starts_with("/agent/"));
    }
    match parts.as_slice() {
        ["sessions", _, rest @ ..] if !rest.is_empty() => Some(match rest[0] {
            "files" => Scope::Files,
            "exec" | "processes" | "terminal" | "tickets" | "docker" => Scope::Exec,
            "ports" | "events" | "preview-links" => Scope::Previews,
            _ => session_scope(reads),
        }),
        ["sessions", ..]
        | ["snapshots", ..]
        | ["homes", ..]
        | ["queue", ..]
        | ["templates", ..] => Some(session_scope(reads)),
        ["labs", ..] | ["classes", ..] => Some(Scope::Labs),
        ["webhooks", ..] => Some(Scope::Webhooks),
        ["users", ..] | ["pool", ..] | ["capacity", ..] | ["audit", ..] => Some(Scope::Admin),
        ["previews", ..] => Some(Scope::Previews),
        // Tokens themselves, logins, and whatever comes next: full access only.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_route_needs_its_scope() {
        let get = Method::GET;
        let post = Method::POST;
        let cases = [
            (&get, "/api/v1/sessions", Some(Scope::SessionsRead)),
            (&post, "/api/v1/sessions", Some(Scope::SessionsWrite)),
            (&get, "/api/v1/sessions/s1", Some(Scope::SessionsRead)),
            (
                &Method::DELETE,
                "/api/v1/sessions/s1",
                Some(Scope::SessionsWrite),
            ),
            (
                &post,
                "/api/v1/sessions/s1/hibernate",
                Some(Scope::SessionsWrite),
            ),
            (
                &get,
                "/api/v1/sessions/s1/timeline",
                Some(Scope::SessionsRead),
            ),
            (
                &Method::PUT,
                "/api/v1/sessions/s1/files/content",
                Some(Scope::Files),
            ),
            (&get, "/api/v1/sessions/s1/files", Some(Scope::Files)),
            (&post, "/api/v1/sessions/s1/exec", Some(Scope::Exec)),
            (&get, "/api/v1/sessions/s1/terminal", Some(Scope::Exec)),
            (&post, "/api/v1/sessions/s1/docker/build", Some(Scope::Exec)),
            (
                &get,
                "/api/v1/sessions/s1/ports/8000/x",
                Some(Scope::Previews),
            ),
            (
                &Method::DELETE,
                "/api/v1/snapshots/k1",
                Some(Scope::SessionsWrite),
            ),
            (&get, "/api/v1/templates", Some(Scope::SessionsRead)),
            (&get, "/api/v1/homes", Some(Scope::SessionsRead)),
            (
                &Method::DELETE,
                "/api/v1/homes/berth-home-a-b-1",
                Some(Scope::SessionsWrite),
            ),
            (&post, "/api/v1/labs/basics/judge", Some(Scope::Labs)),
            (&post, "/judge/basics", Some(Scope::Labs)),
            (&get, "/api/v1/webhooks", Some(Scope::Webhooks)),
            (&get, "/api/v1/users", Some(Scope::Admin)),
            (&post, "/api/v1/tokens", None),
            (&get, "/api/v1/auth/me", None),
            (&get, "/e2b/sandboxes", None),
            (&get, "/api/v1/something-new", None),
        ];
        for (method, path, scope) in cases {
            assert_eq!(needed(method, path), scope, "{method} {path}");
        }
    }
}
