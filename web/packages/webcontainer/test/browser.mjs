// The getting-started flow in Chromium (Debian's, driven by playwright-core): builds the page in
// test/browser with `@webcontainer/api` aliased to @berth/webcontainer, serves it without
// COOP/COEP, and waits for the page to say how the flow went.
//
//   BERTH_URL=http://127.0.0.1:8080 BERTH_TOKEN=... node test/browser.mjs
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { build, preview } from "vite";

const configFile = fileURLToPath(new URL("./browser/vite.config.mjs", import.meta.url));
await build({ configFile });
const server = await preview({ configFile, preview: { port: 0 } });
const address = server.resolvedUrls.local[0];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (m) => console_.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => console_.push(`[pageerror] ${e.message}`));
  const response = await page.goto(`${address}#token=${encodeURIComponent(process.env.BERTH_TOKEN ?? "")}`);
  const headers = response.headers();
  assert.equal(headers["cross-origin-opener-policy"], undefined, "served without COOP");
  assert.equal(headers["cross-origin-embedder-policy"], undefined, "served without COEP");
  const result = page.locator("#result");
  await result.filter({ hasNotText: "running" }).waitFor({ timeout: 240_000 });
  const text = await result.innerText();
  const log = await page.locator("#log").innerText();
  if (text !== "passed") {
    console.error(log + "\n" + console_.join("\n"));
    throw new Error(`the page says: ${text}`);
  }
  console.log(log.trim());
  console.log("getting started: all steps passed in Chromium, with the @webcontainer/api alias");
} finally {
  await browser.close();
  await new Promise((resolve) => server.httpServer.close(resolve));
}
