//! Labs against the real engine: the three shipped labs failed as shipped and passed with
//! their solutions in real sessions with Docker, hints from the ladder and from an assistant
//! (a stand-in chat-completions server that records what it was sent), resets, the judge's
//! timeout and single flight, and a Killercoda import run as a lab. Needs the session images
//! (`scripts/build-images`: `berth/docker`, `python:3.11-slim`).

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use berth_proto::{process::TerminalQuery, user::Role};
use berth_server::config::{Config, TemplateConfig, TemplateDockerConfig};
use serde_json::{Value, json};

use common::{Server, read_until, sh};

fn shipped_labs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs")
}

fn docker_template(config: &mut Config) {
    config.templates.insert(
        "docker".into(),
        TemplateConfig {
            image: "berth/docker:latest".into(),
            memory_mb: 1024,
            cpus: 1.0,
            pids: 256,
            docker: TemplateDockerConfig {
                enabled: true,
                base_images: vec!["berth/busybox:latest".into(), "python:3.11-slim".into()],
                max_containers: 4,
                max_images: 8,
                max_networks: 3,
                allow_pull: false,
            },
            ..TemplateConfig::default()
        },
    );
}

/// A user of the server and their token.
struct Learner {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Learner {
    async fn new(server: &Server, name: &str) -> Self {
        Self::with_role(server, name, Role::User).await
    }

    async fn with_role(server: &Server, name: &str, role: Role) -> Self {
        let created = server
            .client
            .create_user_with_role(name, role)
            .await
            .unwrap();
        Self {
            http: reqwest::Client::new(),
            base: server.client.base_url().trim_end_matches('/').to_owned(),
            token: created.token,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(600));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Starts `lab`; its session's id.
    async fn start(&self, lab: &str) -> String {
        let (status, attempt) = self
            .post(&format!("/api/v1/labs/{lab}/start"), json!({}))
            .await;
        assert_eq!(status, 201, "{attempt}");
        assert_eq!(attempt["step"], 1);
        attempt["session_id"].as_str().unwrap().to_owned()
    }

    async fn judge(&self, lab: &str) -> Value {
        let (status, result) = self
            .post(&format!("/api/v1/labs/{lab}/judge"), json!({}))
            .await;
        assert_eq!(status, 200, "{result}");
        result
    }

    /// Copies a directory of this machine over the session's home.
    async fn put_dir(&self, session: &str, dir: &Path) {
        let dir = dir.to_owned();
        let tar = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(Vec::new());
            builder.append_dir_all(".", dir).unwrap();
            builder.into_inner().unwrap()
        })
        .await
        .unwrap();
        self.put(session, "files/archive", ".", tar).await;
    }

    async fn put_file(&self, session: &str, path: &str, text: &str) {
        self.put(session, "files/content", path, text.to_owned())
            .await;
    }

    /// `PUT /api/v1/sessions/{session}/{route}?path=...`, which must succeed.
    async fn put(&self, session: &str, route: &str, path: &str, body: impl Into<reqwest::Body>) {
        let response = self
            .http
            .put(format!("{}/api/v1/sessions/{session}/{route}", self.base))
            .query(&[("path", path)])
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
}

/// The failed checks of a result: (id, message).
fn failures(result: &Value) -> Vec<(String, String)> {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn failed(result: &Value, id: &str) -> String {
    failures(result)
        .into_iter()
        .find(|(check, _)| check == id)
        .unwrap_or_else(|| panic!("check {id} did not fail: {result:#}"))
        .1
}

/// Fails a lab's first step as it starts, then does the lab as a learner would: step 1 with
/// the solution's `step1` files and the learner's `step1_command`, judged again on step 2
/// (which may fail: the answer is returned), then the whole solution. Every step passes and
/// the attempt completes.
async fn solve(
    server: &Server,
    learner: &Learner,
    lab: &str,
    step1: &[&str],
    step1_command: Option<&str>,
) -> Value {
    let session = learner.start(lab).await;
    let solution = shipped_labs().join(lab).join("solution");
    let first = learner.judge(lab).await;
    assert_eq!(first["passed"], false, "{lab} passed as shipped: {first:#}");
    for file in step1 {
        let text = std::fs::read_to_string(solution.join(file)).unwrap();
        learner.put_file(&session, file, &text).await;
    }
    if let Some(command) = step1_command {
        let mut request = sh(command);
        request.timeout_ms = Some(300_000);
        let ran = server.client.exec(&session, &request).await.unwrap();
        assert_eq!(ran.exit_code, Some(0), "{command}: {}", ran.stderr);
    }
    let passed = learner.judge(lab).await;
    assert_eq!(
        passed["passed"], true,
        "{lab} step 1 with its solution: {passed:#}"
    );
    let second = learner.judge(lab).await;
    learner.put_dir(&session, &solution).await;
    let done = learner.judge(lab).await;
    assert_eq!(
        done["passed"], true,
        "{lab} step 2 with its solution: {done:#}"
    );
    assert_eq!(done["completed"], true, "{done:#}");
    let (_, attempt) = learner.get(&format!("/api/v1/labs/{lab}/active")).await;
    assert_eq!(attempt["step"], 3, "{attempt:#}");
    assert!(attempt["completed_at"].is_string(), "{attempt:#}");

    // The judge took back what it did: no container of its left, nothing planted, the file
    // it changed to test the cache as it was.
    let filter = format!("label=berth.parent={session}");
    let left = common::docker(&["ps", "-aq", "--filter", &filter]).unwrap();
    assert_eq!(left.trim(), "", "{lab}: the judge's containers");
    let home = server
        .client
        .exec(&session, &sh("ls -A; cat app.py 2>/dev/null"))
        .await
        .unwrap()
        .stdout;
    for planted in [".git", "venv", "__pycache__"] {
        assert!(
            !home.lines().any(|l| l == planted),
            "{lab}: {planted} left: {home}"
        );
    }
    assert!(
        !home.contains("changed by the judge"),
        "{lab}: app.py not restored"
    );
    json!({"first": first, "second": second})
}

#[tokio::test]
async fn the_shipped_labs_fail_as_shipped_and_pass_with_their_solutions() {
    let server = Server::start_with(|config| {
        docker_template(config);
        config.labs.dir = Some(shipped_labs());
    })
    .await;
    let (basics, caching, multi) = tokio::join!(
        async {
            let learner = Learner::new(&server, "basics").await;
            solve(
                &server,
                &learner,
                "dockerfile-basics",
                &["Dockerfile"],
                None,
            )
            .await
        },
        async {
            let learner = Learner::new(&server, "caching").await;
            solve(&server, &learner, "layer-caching", &["Dockerfile"], None).await
        },
        async {
            let learner = Learner::new(&server, "multi").await;
            let build = "docker build -q -t app . >/dev/null";
            solve(&server, &learner, "multi-stage", &[], Some(build)).await
        },
    );

    // dockerfile-basics: no Dockerfile; then, with one but no .dockerignore, the script run
    // in the built image names what leaked.
    let none = &basics["first"];
    assert!(
        failed(none, "dockerfile-exists").contains("no Dockerfile"),
        "{none:#}"
    );
    assert!(failed(none, "health").contains("was not built"), "{none:#}");
    let leaked = failed(&basics["second"], "no-leaks");
    assert!(
        leaked.contains("leaked into the image") && leaked.contains(".env"),
        "{leaked}"
    );
    assert!(failed(&basics["second"], "dockerignore-exists").contains(".dockerignore"));

    // layer-caching: the shipped Dockerfile copies the code before installing.
    let order = &caching["first"];
    assert!(
        failures(order)
            .iter()
            .any(|(_, m)| m.contains("should come before")),
        "{order:#}"
    );
    // multi-stage: step 1 asks for the single-stage image, measured; step 2 for its size.
    let big = &multi["second"];
    assert!(
        failures(big)
            .iter()
            .any(|(_, m)| m.contains("must be under 250 MB")),
        "{big:#}"
    );
    server.stop().await;
}

/// A chat-completions stand-in: records each request's body and answers as told.
#[derive(Clone, Default)]
struct Assistant {
    received: Arc<Mutex<Vec<Value>>>,
    /// `ok`, `fail` (HTTP 500) or `slow` (answers after 5 s).
    mode: Arc<Mutex<&'static str>>,
}

impl Assistant {
    async fn serve(&self) -> String {
        let this = self.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let this = this.clone();
                async move {
                    this.received.lock().unwrap().push(body);
                    let mode = *this.mode.lock().unwrap();
                    match mode {
                        "fail" => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({"error": {"message": "overloaded"}})),
                        ),
                        slow_or_ok => {
                            if slow_or_ok == "slow" {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            (
                                axum::http::StatusCode::OK,
                                axum::Json(json!({"choices": [{"message": {
                                    "role": "assistant",
                                    "content": "Look at the CMD line of your Dockerfile."
                                }}]})),
                            )
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1")
    }

    fn last_prompt(&self) -> String {
        let received = self.received.lock().unwrap();
        let body = received.last().expect("the assistant was asked");
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A copy of the shipped labs whose dockerfile-basics solution carries a marker, to prove the
/// assistant never sees it.
fn labs_with_marked_solution() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(shipped_labs().join("dockerfile-basics"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let solution = dir.path().join("dockerfile-basics/solution/Dockerfile");
    let text = std::fs::read_to_string(&solution).unwrap();
    std::fs::write(&solution, format!("{text}# solution-marker-5521\n")).unwrap();
    let lab = dir.path().join("dockerfile-basics/lab.toml");
    let text = std::fs::read_to_string(&lab).unwrap();
    let marked = text.replacen("EXPOSE 8000\n", "EXPOSE 8000\n# solve-marker-7710\n", 1);
    assert_ne!(marked, text, "step 1's solve writes EXPOSE 8000");
    std::fs::write(&lab, marked).unwrap();
    dir
}

#[tokio::test]
async fn hints_climb_the_ladder_then_ask_an_assistant_grounded_in_the_session() {
    let assistant = Assistant::default();
    *assistant.mode.lock().unwrap() = "ok";
    let url = assistant.serve().await;
    let labs = labs_with_marked_solution();
    let server = Server::start_with(|config| {
        docker_template(config);
        config.labs.dir = Some(labs.path().to_owned());
        config.ai.base_url = Some(url);
        config.ai.model = "stand-in-model".into();
        config.ai.timeout_seconds = 1;
        config.ai.rpm_per_session = 4;
    })
    .await;
    let learner = Learner::new(&server, "hinted").await;
    let lab = "dockerfile-basics";
    let session = learner.start(lab).await;

    // The learner's own Dockerfile, a secret in a file the assistant reads, a failing check,
    // and a line in the terminal.
    learner
        .put_file(
            &session,
            "Dockerfile",
            "FROM python:3.11-slim\nWORKDIR /srv\nCMD [\"python\", \"server-marker-8812.py\"]\n",
        )
        .await;
    learner
        .put_file(&session, ".dockerignore", "API_KEY=sekrit-value-991\n")
        .await;
    let result = learner.judge(lab).await;
    let failing = failed(&result, "health");
    let mut terminal = server
        .client
        .terminal(&session, &TerminalQuery::default())
        .await
        .unwrap();
    terminal.send(b"echo terminal-$((40+2))\n").await.unwrap();
    read_until(&mut terminal, "terminal-42").await;

    // The lab's own hints first, in order.
    let (_, lab_view) = learner.get(&format!("/api/v1/labs/{lab}")).await;
    let ladder = lab_view["steps"][0]["hints"].as_u64().unwrap();
    assert!(ladder >= 2, "{lab_view:#}");
    for level in 1..=ladder {
        let (status, hint) = learner
            .post(&format!("/api/v1/labs/{lab}/hint"), json!({}))
            .await;
        assert_eq!(status, 200, "{hint}");
        assert_eq!(hint["source"], "static");
        assert_eq!(hint["level"], level);
        assert_eq!(hint["remaining_static"], ladder - level);
    }
    assert!(assistant.received.lock().unwrap().is_empty());

    // Then the assistant, through seed 004's route too.
    let (status, hint) = learner.post("/agent/hint", json!({"lab": lab})).await;
    assert_eq!(status, 200, "{hint}");
    assert_eq!(hint["source"], "ai");
    assert_eq!(hint["text"], "Look at the CMD line of your Dockerfile.");
    let prompt = assistant.last_prompt();
    assert!(
        prompt.contains("server-marker-8812.py"),
        "the learner's Dockerfile: {prompt}"
    );
    assert!(prompt.contains(&failing), "the failing check: {prompt}");
    assert!(prompt.contains("terminal-42"), "the terminal: {prompt}");
    assert!(
        !prompt.contains("solution-marker-5521"),
        "the solution: {prompt}"
    );
    assert!(
        !prompt.contains("solve-marker-7710"),
        "a solve script: {prompt}"
    );
    assert!(!prompt.contains("sekrit-value-991"), "a secret: {prompt}");
    assert!(
        prompt.contains("<learner-data"),
        "learner text fenced: {prompt}"
    );
    assert_eq!(
        assistant.received.lock().unwrap()[0]["model"],
        "stand-in-model"
    );

    let (status, explained) = learner
        .post(
            &format!("/api/v1/labs/{lab}/explain"),
            json!({"question": "what does WORKDIR do?"}),
        )
        .await;
    assert_eq!(status, 200, "{explained}");
    assert!(assistant.last_prompt().contains("what does WORKDIR do?"));

    // The provider failing, then too slow: clear errors, not a hang.
    *assistant.mode.lock().unwrap() = "fail";
    let (status, error) = learner
        .post(&format!("/api/v1/labs/{lab}/hint"), json!({}))
        .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (502, &json!("upstream_failed")),
        "{error}"
    );
    *assistant.mode.lock().unwrap() = "slow";
    let started = std::time::Instant::now();
    let (status, error) = learner
        .post(&format!("/api/v1/labs/{lab}/hint"), json!({}))
        .await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (504, &json!("timeout")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // Four answers a minute for this session: the fifth is refused with when to retry.
    *assistant.mode.lock().unwrap() = "ok";
    let (status, limited) = learner
        .post(&format!("/api/v1/labs/{lab}/hint"), json!({}))
        .await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"]["code"], "rate_limited");
    assert!(
        limited["error"]["retry_after"].as_u64().unwrap() >= 1,
        "{limited}"
    );
    drop(labs);
    server.stop().await;
}

/// Labs made for this test: `steps` (three steps whose setup and solve leave files behind),
/// `slow` (a check that outlives the judge), and Killercoda's `hello`, imported.
fn test_labs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let mut steps = String::from(
        "id = \"steps\"\ntitle = \"Steps\"\nsummary = \"Three steps.\"\ntemplate = \"base\"\n",
    );
    for n in 1..=3 {
        write(&format!("steps/steps/0{n}.md"), &format!("# Step {n}\n"));
        steps.push_str(&format!(
            "\n[[steps]]\nid = \"s{n}\"\ntitle = \"Step {n}\"\ntext = \"steps/0{n}.md\"\n\
             setup = \"echo set >> setup{n}.txt\"\nsolve = \"touch done{n}.txt\"\n\
             hints = [\"make done{n}.txt\"]\n\n[[steps.checks]]\nid = \"done\"\n\
             title = \"done{n}.txt exists\"\nkind = \"file_exists\"\npath = \"done{n}.txt\"\n"
        ));
    }
    write("steps/lab.toml", &steps);
    write("slow/steps/01.md", "# Wait\n");
    write(
        "slow/lab.toml",
        "id = \"slow\"\ntitle = \"Slow\"\nsummary = \"A check that hangs.\"\ntemplate = \"base\"\n\n\
         [[steps]]\nid = \"wait\"\ntitle = \"Wait\"\ntext = \"steps/01.md\"\n\n\
         [[steps.checks]]\nid = \"sleep\"\ntitle = \"Sleeps\"\nkind = \"command\"\nrun = \"sleep 50\"\n",
    );
    write("kinds/steps/01.md", "# Serve your notes\n");
    write(
        "kinds/lab.toml",
        "id = \"kinds\"\ntitle = \"Kinds\"\nsummary = \"The session's own server.\"\n\
         template = \"base\"\n\n[[steps]]\nid = \"serve\"\ntitle = \"Serve\"\n\
         text = \"steps/01.md\"\n\n[[steps.checks]]\nid = \"notes\"\ntitle = \"Notes say hello\"\n\
         kind = \"file_matches\"\npath = \"notes.txt\"\nmatches = ['^hello$']\n\
         not_matches = ['(?i)password']\n\n[[steps.checks]]\nid = \"served\"\n\
         title = \"Port 8123 serves the folder\"\nkind = \"http_probe\"\nport = 8123\n\
         body = 'notes\\.txt'\n",
    );
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/killercoda-hello");
    berth_server::labs::import::import_killercoda(&fixture, dir.path(), Some("hello"), "base")
        .unwrap();
    dir
}

#[tokio::test]
async fn resets_the_judges_bounds_and_an_imported_killercoda_scenario() {
    let labs = test_labs();
    let server = Server::start_with(|config| {
        config.labs.dir = Some(labs.path().to_owned());
        config.labs.judge_timeout_seconds = 10;
        // A session per lab of this test.
        config.quota.sessions_per_user = 6;
    })
    .await;
    let learner = Learner::new(&server, "resetter").await;
    let exec = |session: String, script: &'static str| {
        let client = &server.client;
        async move { client.exec(&session, &sh(script)).await.unwrap().stdout }
    };

    // Nothing yet: no such lab, no attempt to judge.
    assert_eq!(
        learner.post("/api/v1/labs/nope/start", json!({})).await.0,
        404
    );
    let (status, none) = learner.post("/judge/steps", json!({})).await;
    assert_eq!(status, 404, "{none}");

    let session = learner.start("steps").await;
    // One attempt per user and lab: a second start answers the same one.
    let (status, again) = learner.post("/api/v1/labs/steps/start", json!({})).await;
    assert_eq!(
        (status, again["session_id"].as_str()),
        (200, Some(session.as_str()))
    );
    assert_eq!(exec(session.clone(), "cat setup1.txt").await, "set\n");
    let (status, ahead) = learner
        .post("/api/v1/labs/steps/judge", json!({"step": 2}))
        .await;
    assert_eq!(status, 400, "{ahead}");

    // Skip to step 3: 1's solve, 2's setup and solve, then 3's setup.
    let (status, skipped) = learner
        .post(
            "/api/v1/labs/steps/reset",
            json!({"mode": "skip_to", "step": 3}),
        )
        .await;
    assert_eq!((status, &skipped["step"]), (200, &json!(3)), "{skipped}");
    assert_eq!(
        exec(
            session.clone(),
            "ls done1.txt done2.txt setup2.txt setup3.txt"
        )
        .await,
        "done1.txt\ndone2.txt\nsetup2.txt\nsetup3.txt\n"
    );
    // Back to step 2: its setup runs again.
    let (status, back) = learner
        .post(
            "/api/v1/labs/steps/reset",
            json!({"mode": "step", "step": 2}),
        )
        .await;
    assert_eq!((status, &back["step"]), (200, &json!(2)), "{back}");
    assert_eq!(exec(session.clone(), "cat setup2.txt").await, "set\nset\n");
    let result = learner.judge("steps").await;
    assert_eq!(
        (&result["passed"], &result["step"]),
        (&json!(true), &json!(2))
    );
    // Passing step 2 set step 3 up again.
    assert_eq!(
        exec(session.clone(), "wc -l < setup3.txt").await.trim(),
        "2"
    );

    // Restart: a new session from the snapshot taken at start; the old one is gone.
    let (status, restarted) = learner
        .post("/api/v1/labs/steps/reset", json!({"mode": "restart"}))
        .await;
    assert_eq!(status, 200, "{restarted}");
    let fresh = restarted["session_id"].as_str().unwrap().to_owned();
    assert_ne!(fresh, session);
    assert_eq!(restarted["step"], 1);
    assert_eq!(exec(fresh.clone(), "ls").await, "setup1.txt\n");
    let (_, old) = learner.get(&format!("/api/v1/sessions/{session}")).await;
    assert_eq!(old["state"], "stopped", "{old}");
    let (_, progress) = learner.get("/api/v1/labs/progress").await;
    assert_eq!(progress["attempts"][0]["session_id"], fresh.as_str());
    // And again: each restart keeps a start to go back to.
    exec(fresh.clone(), "touch done1.txt").await;
    let (status, again) = learner
        .post("/api/v1/labs/steps/reset", json!({"mode": "restart"}))
        .await;
    assert_eq!(status, 200, "{again}");
    let third = again["session_id"].as_str().unwrap().to_owned();
    assert_eq!(exec(third.clone(), "ls").await, "setup1.txt\n");

    // A judging that outlives labs.judge_timeout_seconds is answered 504; one at a time.
    learner.start("slow").await;
    let (first, second) = tokio::join!(learner.post("/api/v1/labs/slow/judge", json!({})), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        learner.post("/api/v1/labs/slow/judge", json!({})).await
    });
    assert_eq!(
        (first.0, &first.1["error"]["code"]),
        (504, &json!("timeout")),
        "{first:?}"
    );
    assert_eq!(
        (second.0, &second.1["error"]["code"]),
        (409, &json!("conflict")),
        "{second:?}"
    );

    // `file_matches` and `http_probe` on the session's own port.
    let kinds = learner.start("kinds").await;
    learner
        .put_file(&kinds, "notes.txt", "hello\npassword: x\n")
        .await;
    let before = learner.judge("kinds").await;
    assert!(
        failed(&before, "notes").contains("should not have `password`"),
        "{before:#}"
    );
    assert!(
        failed(&before, "served").contains("nothing answered"),
        "{before:#}"
    );
    learner.put_file(&kinds, "notes.txt", "hello\n").await;
    exec(
        kinds.clone(),
        "setsid python3 -m http.server 8123 >/dev/null 2>&1 </dev/null & sleep 1",
    )
    .await;
    let after = learner.judge("kinds").await;
    assert_eq!(after["passed"], true, "{after:#}");
    assert_eq!(after["checks"][1]["metrics"]["status"], 200.0);

    // The imported Killercoda scenario: its verify scripts judge the session.
    let hello = learner.start("hello").await;
    let before = learner.judge("hello").await;
    assert_eq!(before["passed"], false, "{before:#}");
    exec(hello.clone(), "echo hello > /home/user/hello.txt").await;
    assert_eq!(learner.judge("hello").await["passed"], true);
    exec(hello.clone(), "mkdir /home/user/projects").await;
    let done = learner.judge("hello").await;
    assert_eq!(done["completed"], true, "{done:#}");
    drop(labs);
    server.stop().await;
}

#[tokio::test]
async fn an_instructor_starts_a_lab_for_a_class_follows_it_resets_and_shadows_read_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let labs = test_labs();
    let server = Server::start_with(|config| {
        config.labs.dir = Some(labs.path().to_owned());
    })
    .await;
    let teacher = Learner::with_role(&server, "teacher", Role::Instructor).await;
    let ann = Learner::new(&server, "ann").await;
    Learner::new(&server, "ben").await;

    // Only instructors keep classes; members must be users.
    let (status, refused) = ann
        .post(
            "/api/v1/classes",
            json!({"name": "mine", "members": ["ben"]}),
        )
        .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (403, &json!("forbidden")),
        "{refused}"
    );
    let (status, unknown) = teacher
        .post(
            "/api/v1/classes",
            json!({"name": "x", "members": ["ann", "zed"]}),
        )
        .await;
    assert_eq!(status, 404, "{unknown}");
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zed")
    );
    let (status, class) = teacher
        .post(
            "/api/v1/classes",
            json!({"name": "Docker 101", "members": ["ann", "ben"], "max_sessions": 1}),
        )
        .await;
    assert_eq!(status, 201, "{class}");
    let class_id = class["id"].as_str().unwrap().to_owned();
    let (status, _) = ann.get(&format!("/api/v1/classes/{class_id}")).await;
    assert_eq!(status, 403, "a learner keeps no class");

    // The lab for the whole class, within its one session at a time.
    let (status, started) = teacher
        .post(
            &format!("/api/v1/classes/{class_id}/labs/steps/start"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    let session = started["started"][0]["attempt"]["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started:#}"))
        .to_owned();
    assert_eq!(started["started"][0]["user"], "ann");
    assert_eq!(
        started["started"][1]["error"]["code"], "quota_exceeded",
        "{started:#}"
    );
    let (_, mine) = ann.get("/api/v1/labs/steps/active").await;
    assert_eq!(
        mine["session_id"],
        session.as_str(),
        "the attempt is ann's own"
    );

    // Live: ann's judging shows in the class view.
    let result = ann.judge("steps").await;
    assert_eq!(result["passed"], false);
    let (_, view) = teacher.get(&format!("/api/v1/classes/{class_id}")).await;
    let learners = view["learners"].as_array().unwrap();
    assert_eq!(learners[0]["user"], "ann");
    assert_eq!(learners[0]["attempts"][0]["judgings"], 1, "{view:#}");
    assert_eq!(learners[0]["attempts"][0]["last_result"]["passed"], false);
    assert_eq!(learners[1]["attempts"], json!([]));

    // Shadowing: the learner's terminal, its output live, the watcher's input dropped.
    let ann_client = berth_client::Client::new(&ann.base, &ann.token).unwrap();
    let mut own = ann_client
        .terminal(&session, &TerminalQuery::default())
        .await
        .unwrap();
    own.send(b"echo ann-typed-$((1+1))\n").await.unwrap();
    read_until(&mut own, "ann-typed-2").await;
    let (_, terminals) = teacher
        .get(&format!(
            "/api/v1/classes/{class_id}/sessions/{session}/terminals"
        ))
        .await;
    let terminal_id = terminals[0]["terminal_id"].as_str().unwrap().to_owned();
    assert!(
        terminals[0]["text"]
            .as_str()
            .unwrap()
            .contains("ann-typed-2"),
        "{terminals}"
    );

    let url = format!(
        "{}/api/v1/classes/{class_id}/sessions/{session}/terminal?terminal_id={terminal_id}",
        ann.base.replacen("http", "ws", 1)
    );
    let mut request = url.clone().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", teacher.token).parse().unwrap(),
    );
    let (mut shadow, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut watched = String::new();
    let mut watch_until = async |shadow: &mut tokio_tungstenite::WebSocketStream<_>,
                                 needle: &str| {
        while !watched.contains(needle) {
            match tokio::time::timeout(Duration::from_secs(10), shadow.next()).await {
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    watched.push_str(&String::from_utf8_lossy(&bytes))
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("the shadow saw no {needle:?} ({other:?}): {watched:?}"),
            }
        }
    };
    watch_until(&mut shadow, "ann-typed-2").await;
    shadow
        .send(Message::binary(b"echo shadow-typed-$((2+2))\n".to_vec()))
        .await
        .unwrap();
    own.send(b"echo after-shadow-$((3+3))\n").await.unwrap();
    let seen = read_until(&mut own, "after-shadow-6").await;
    watch_until(&mut shadow, "after-shadow-6").await;
    assert!(
        !seen.contains("shadow-typed"),
        "the watcher typed: {seen:?}"
    );
    assert!(
        !watched.contains("shadow-typed"),
        "the watcher typed: {watched:?}"
    );

    // Another instructor finds no such class; a learner's sessions but their labs' are not
    // the class's to watch.
    let other = Learner::with_role(&server, "other-teacher", Role::Instructor).await;
    assert_eq!(
        other.get(&format!("/api/v1/classes/{class_id}")).await.0,
        404
    );
    let (status, own_session) = ann
        .post("/api/v1/sessions", json!({"template": "base"}))
        .await;
    assert_eq!(status, 201, "{own_session}");
    let own_session = own_session["id"].as_str().unwrap();
    let (status, _) = teacher
        .get(&format!(
            "/api/v1/classes/{class_id}/sessions/{own_session}/terminals"
        ))
        .await;
    assert_eq!(status, 404, "a session that is not a lab's");

    // Someone who does not keep the class cannot watch.
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", ann.token).parse().unwrap(),
    );
    let refused = tokio_tungstenite::connect_async(request).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "{refused:?}"
    );

    // The instructor moves ann on to step 3.
    let (status, reset) = teacher
        .post(
            &format!("/api/v1/classes/{class_id}/members/ann/labs/steps/reset"),
            json!({"mode": "skip_to", "step": 3}),
        )
        .await;
    assert_eq!((status, &reset["step"]), (200, &json!(3)), "{reset}");
    let (_, mine) = ann.get("/api/v1/labs/steps/active").await;
    assert_eq!(mine["step"], 3);
    drop(labs);
    server.stop().await;
}
