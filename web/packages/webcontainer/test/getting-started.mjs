// WebContainer's getting-started flow (webcontainers.io/guides/quickstart), unchanged but for
// where it boots, in Node against a real Berth session: mount a tree with a package.json and an
// HTTP server with no dependencies (the session needs no internet), `npm install`, `npm run
// start`, `server-ready` with a URL that serves the page, `fs.watch` seeing a `writeFile`,
// `export` round-tripping through `mount`, and `kill()` resolving `exit`.
//
//   BERTH_URL=http://127.0.0.1:8080 BERTH_TOKEN=... node test/getting-started.mjs
import assert from "node:assert/strict";
import { WebSocket } from "ws";
import { WebContainer, configureServer } from "@berth/webcontainer";
import { gettingStarted } from "./flow.mjs";

configureServer({ url: process.env.BERTH_URL, token: process.env.BERTH_TOKEN, WebSocket });
const steps = await gettingStarted(WebContainer, (line) => console.log(line));
assert.ok(steps.length > 0);
console.log("getting started: all steps passed in Node");
