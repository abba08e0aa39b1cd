import { defineConfig } from "vitest/config";
import preact from "@preact/preset-vite";

// `npm run dev` serves the UI on :5173 and passes API calls to a `berth serve` on :8080.
const api = process.env.BERTH_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 2000 },
  server: { proxy: { "/api": { target: api, ws: true } } },
  test: { environment: "happy-dom", include: ["test/**/*.test.ts", "packages/*/test/**/*.test.ts"] },
});
