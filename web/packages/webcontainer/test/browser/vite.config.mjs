// Builds the browser page with `@webcontainer/api` aliased to @berth/webcontainer, and serves
// it with /api proxied to Berth (BERTH_URL), WebSockets included. No COOP/COEP headers: a
// Berth-backed WebContainer does not need cross-origin isolation.
import { fileURLToPath } from "node:url";

const berth = process.env.BERTH_URL ?? "http://127.0.0.1:8080";

export default {
  root: fileURLToPath(new URL(".", import.meta.url)),
  logLevel: "warn",
  resolve: { alias: { "@webcontainer/api": "@berth/webcontainer" } },
  build: { outDir: fileURLToPath(new URL("../../dist-browser-test", import.meta.url)), emptyOutDir: true },
  preview: { host: "127.0.0.1", proxy: { "/api": { target: berth, ws: true } } },
};
