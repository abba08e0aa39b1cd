import { afterEach, describe, expect, it, vi } from "vitest";
import { api, ApiError, errorFrom, shadowTerminalUrl } from "../src/api";
import { savedTerminals, saveTerminals } from "../src/lib/terminals";

afterEach(() => vi.unstubAllGlobals());

describe("errors", () => {
  it("carry the API's code and message", async () => {
    const body = JSON.stringify({ error: { code: "quota_exceeded", message: "alice holds 3 sessions" } });
    const err = await errorFrom(new Response(body, { status: 429 }));
    expect(err).toBeInstanceOf(ApiError);
    expect([err.status, err.code, err.message]).toEqual([429, "quota_exceeded", "alice holds 3 sessions"]);
  });
  it("say something useful when the body is not Berth's JSON", async () => {
    const err = await errorFrom(new Response("<h1>Bad gateway</h1>", { status: 502 }));
    expect(err.code).toBe("http_502");
    expect(err.message).toContain("Bad gateway");
  });
});

describe("requests", () => {
  it("send the CSRF token from login on changes, not on reads", async () => {
    const calls: { method: string; csrf: string | null }[] = [];
    vi.stubGlobal("fetch", async (request: Request) => {
      calls.push({ method: request.method, csrf: request.headers.get("x-csrf-token") });
      const path = new URL(request.url).pathname;
      if (path === "/api/v1/auth/login") {
        return new Response(JSON.stringify({ name: "alice", admin: false, csrf_token: "c5rf" }));
      }
      if (path === "/api/v1/sessions" && request.method === "GET") return new Response('{"sessions":[]}');
      return new Response(JSON.stringify({ id: "s1" }), { status: 201 });
    });
    await api.login("token");
    await api.sessions();
    await api.createSession("default");
    expect(calls[1].csrf).toBeNull();
    expect(calls[2].csrf).toBe("c5rf");
  });
  it("turn a failed connection into a network error", async () => {
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    await expect(api.sessions()).rejects.toMatchObject({ code: "network" });
  });
  it("turn an error answer into an ApiError with its code", async () => {
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ error: { code: "not_found", message: "no session s9" } }), { status: 404 }),
    );
    const err = await api.session("s9").catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect([err.status, err.code, err.message]).toEqual([404, "not_found", "no session s9"]);
  });
  it("follow a queued create to its session once admitted (201 with the session)", async () => {
    vi.stubGlobal("fetch", async () => new Response(JSON.stringify({ id: "s7", state: "running" }), { status: 201 }));
    const status = await api.queue("t1");
    expect("ticket" in status).toBe(false);
  });
});

describe("labs", () => {
  it("find no active attempt on a 404, and pass other errors on", async () => {
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ error: { code: "not_found", message: "no active attempt" } }), { status: 404 }),
    );
    expect(await api.activeAttempt("dockerfile-basics")).toBeNull();
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ error: { code: "store_unavailable", message: "the store is down" } }), { status: 503 }),
    );
    await expect(api.activeAttempt("dockerfile-basics")).rejects.toMatchObject({ code: "store_unavailable" });
  });
  it("send their requests to the lab's routes with their bodies", async () => {
    const calls: { method: string; path: string; body: string }[] = [];
    vi.stubGlobal("fetch", async (request: Request) => {
      calls.push({ method: request.method, path: new URL(request.url).pathname, body: await request.text() });
      return new Response("{}");
    });
    await api.judge("dockerfile-basics");
    await api.hint("dockerfile-basics");
    await api.explain("dockerfile-basics", "COPY failed");
    await api.resetLab("dockerfile-basics", "skip_to", 2);
    expect(calls).toEqual([
      { method: "POST", path: "/api/v1/labs/dockerfile-basics/judge", body: "{}" },
      { method: "POST", path: "/api/v1/labs/dockerfile-basics/hint", body: "{}" },
      { method: "POST", path: "/api/v1/labs/dockerfile-basics/explain", body: '{"question":"COPY failed"}' },
      { method: "POST", path: "/api/v1/labs/dockerfile-basics/reset", body: '{"mode":"skip_to","step":2}' },
    ]);
  });
});

describe("saved terminals", () => {
  it("round-trip per session and survive garbage", () => {
    saveTerminals("s1", ["t1", "t2"]);
    expect(savedTerminals("s1")).toEqual(["t1", "t2"]);
    expect(savedTerminals("s2")).toEqual([]);
    sessionStorage.setItem("berth.terminals.s3", "{not json");
    expect(savedTerminals("s3")).toEqual([]);
  });
});

describe("classes", () => {
  it("send their requests to the class routes with their bodies", async () => {
    const calls: { method: string; path: string; body: string }[] = [];
    vi.stubGlobal("fetch", async (request: Request) => {
      calls.push({ method: request.method, path: new URL(request.url).pathname, body: await request.text() });
      const path = new URL(request.url).pathname;
      if (path.endsWith("/start")) return new Response('{"started":[{"user":"alice"}]}');
      if (path.endsWith("/terminals")) return new Response('[{"terminal_id":"t1","text":"$ "}]');
      if (request.method === "DELETE") return new Response(null, { status: 204 });
      return new Response('{"classes":[]}');
    });
    expect(await api.classes()).toEqual([]);
    await api.createClass({ name: "Monday", members: ["alice", "bob"], max_sessions: 2 });
    await api.classView("c1");
    await api.deleteClass("c1");
    expect(await api.startClassLab("c1", "dockerfile-basics")).toEqual([{ user: "alice" }]);
    await api.resetMember("c1", "alice", "dockerfile-basics", "step", 2);
    expect(await api.learnerTerminals("c1", "s1")).toEqual([{ terminal_id: "t1", text: "$ " }]);
    expect(calls).toEqual([
      { method: "GET", path: "/api/v1/classes", body: "" },
      { method: "POST", path: "/api/v1/classes", body: '{"name":"Monday","members":["alice","bob"],"max_sessions":2}' },
      { method: "GET", path: "/api/v1/classes/c1", body: "" },
      { method: "DELETE", path: "/api/v1/classes/c1", body: "" },
      { method: "POST", path: "/api/v1/classes/c1/labs/dockerfile-basics/start", body: "" },
      {
        method: "POST",
        path: "/api/v1/classes/c1/members/alice/labs/dockerfile-basics/reset",
        body: '{"mode":"step","step":2}',
      },
      { method: "GET", path: "/api/v1/classes/c1/sessions/s1/terminals", body: "" },
    ]);
  });
  it("watch a learner's terminal on the class's WebSocket route", () => {
    const url = new URL(shadowTerminalUrl("c1", "s1", "t2"));
    expect([url.protocol, url.pathname, url.search]).toEqual(["ws:", "/api/v1/classes/c1/sessions/s1/terminal", "?terminal_id=t2"]);
  });
});

describe("the admin's requests and homes", () => {
  it("go to their routes with their bodies and queries", async () => {
    const calls: { method: string; path: string; body: string }[] = [];
    vi.stubGlobal("fetch", async (request: Request) => {
      const url = new URL(request.url);
      calls.push({ method: request.method, path: url.pathname + url.search, body: await request.text() });
      if (request.method === "DELETE") return new Response(null, { status: 204 });
      if (url.pathname === "/api/v1/users" && request.method === "POST") {
        return new Response('{"id":"u1","name":"ada","token":"once","created_at":"2026-11-23T12:00:00Z"}', { status: 201 });
      }
      if (url.pathname === "/api/v1/users") return new Response('{"users":[]}');
      if (url.pathname === "/api/v1/sessions") return new Response('{"sessions":[]}');
      if (url.pathname === "/api/v1/homes") return new Response('{"homes":[]}');
      if (url.pathname === "/api/v1/auth/providers") return new Response('{"providers":[]}');
      return new Response("{}");
    });
    expect(await api.providers()).toEqual([]);
    expect(await api.users()).toEqual([]);
    expect((await api.createUser({ name: "ada", role: "instructor" })).token).toBe("once");
    await api.updateUser("ada", { disabled: true });
    await api.deleteUser("ada");
    await api.capacity();
    await api.allSessions(true);
    expect(await api.homes()).toEqual([]);
    await api.homes("ada");
    await api.deleteHome("berth-home-ada-default");
    expect(calls).toEqual([
      { method: "GET", path: "/api/v1/auth/providers", body: "" },
      { method: "GET", path: "/api/v1/users", body: "" },
      { method: "POST", path: "/api/v1/users", body: '{"name":"ada","role":"instructor"}' },
      { method: "PATCH", path: "/api/v1/users/ada", body: '{"disabled":true}' },
      { method: "DELETE", path: "/api/v1/users/ada", body: "" },
      { method: "GET", path: "/api/v1/capacity", body: "" },
      { method: "GET", path: "/api/v1/sessions?all=true", body: "" },
      { method: "GET", path: "/api/v1/homes", body: "" },
      { method: "GET", path: "/api/v1/homes?user=ada", body: "" },
      { method: "DELETE", path: "/api/v1/homes/berth-home-ada-default", body: "" },
    ]);
  });
  it("say the server's message when a home is in use", async () => {
    const message = "the home is used by session s1; delete the session first";
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ error: { code: "conflict", message } }), { status: 409 }),
    );
    await expect(api.deleteHome("berth-home-ada-default")).rejects.toMatchObject({ status: 409, message });
  });
});
