// The getting-started flow as a WebContainer app writes it: `@webcontainer/api` is aliased to
// @berth/webcontainer by this page's build (vite.config.mjs), nothing else changes. The token
// comes in the page's fragment; Berth is this page's own origin (its server proxies /api).
import { WebContainer, configureAPIKey } from "@webcontainer/api";
import { gettingStarted } from "../flow.mjs";

const log = document.getElementById("log");
const result = document.getElementById("result");
configureAPIKey(new URLSearchParams(location.hash.slice(1)).get("token"));
gettingStarted(WebContainer, (line) => (log.textContent += line + "\n")).then(
  () => (result.textContent = "passed"),
  (err) => (result.textContent = `failed: ${err.message}`),
);
