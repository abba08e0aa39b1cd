// End-to-end: the steps a newcomer does by hand, in Debian's Chromium driven by
// playwright-core, against a running `berth serve`. Every step leaves a screenshot in
// SCREENSHOTS (default e2e/screenshots); a failing step leaves one named FAILED and prints the
// page's text and console.
//
//   BERTH_URL=http://127.0.0.1:8080 BERTH_TOKEN=<an instructor's token> BERTH_LEARNER_TOKEN=<e2e-learner's token> \
//     BERTH_ADMIN_TOKEN=<the admin token> node e2e/workspace.mjs
//
// Without BERTH_ADMIN_TOKEN the admin's page is not tried (and the run says so).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.BERTH_URL;
const token = process.env.BERTH_TOKEN;
const learnerToken = process.env.BERTH_LEARNER_TOKEN;
const adminToken = process.env.BERTH_ADMIN_TOKEN;
const shots = process.env.SCREENSHOTS ?? new URL("./screenshots", import.meta.url).pathname;
if (!url || !token) {
  console.error("set BERTH_URL and BERTH_TOKEN (a user token: `berth user create NAME`)");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  // Root in a container has no user namespaces for Chromium's sandbox; the rest keeps
  // Chromium off the network this machine does not have.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const consoleLines = [];
page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
page.setDefaultTimeout(20_000);

let number = 0;
/** The page a step's screenshot shows: `page`, unless the step works in a browser context of
 *  its own (another user's) and says so. */
let screen = page;
async function step(name, run) {
  number += 1;
  const label = `${String(number).padStart(2, "0")}-${name}`;
  const started = Date.now();
  screen = page;
  try {
    await run();
    await screen.screenshot({ path: join(shots, `${label}.png`) });
    console.log(`ok   ${label} (${Date.now() - started} ms)`);
  } catch (err) {
    const file = join(shots, `${label}-FAILED.png`);
    await screen.screenshot({ path: file }).catch(() => {});
    console.error(`FAIL ${label}: ${err.message}`);
    console.error(`screenshot: ${file}`);
    console.error("page text:\n" + (await screen.locator("body").innerText().catch(() => "?")).slice(0, 3000));
    console.error("console:\n" + consoleLines.slice(-30).join("\n"));
    await browser.close();
    process.exit(1);
  }
}

/** A screenshot of what the current step shows before its end, which no longer does. */
async function shotDuringStep(what) {
  await screen.screenshot({ path: join(shots, `${String(number).padStart(2, "0")}-${what}.png`) });
}

/** The terminal's visible lines (xterm's DOM renderer keeps one element per row). */
async function terminalLines() {
  return page.locator(".terminal:not(.hidden) .xterm-rows > div").allInnerTexts();
}

async function waitForTerminalLine(predicate, what) {
  const deadline = Date.now() + 20_000;
  let lines = [];
  while (Date.now() < deadline) {
    lines = (await terminalLines()).map((l) => l.replace(/\u00a0/g, " ").trimEnd());
    if (lines.some(predicate)) return lines;
    await page.waitForTimeout(100);
  }
  throw new Error(`the terminal never showed ${what}; it shows:\n${lines.filter(Boolean).join("\n")}`);
}

async function typeInTerminal(text) {
  await page.locator(".terminal:not(.hidden) .xterm").click();
  await page.keyboard.type(text);
}

/** Presses the lab's Check and waits for the judge's answer: a Docker build can take a while. */
async function checkLab() {
  const panel = page.locator(".lab-panel");
  const before = Number(await panel.getAttribute("data-judgings"));
  await panel.getByRole("button", { name: "Check", exact: true }).click();
  await page.waitForFunction(
    (before) =>
      Number(document.querySelector(".lab-panel")?.getAttribute("data-judgings")) > before ||
      [...document.querySelectorAll(".toast-error")].some((t) => t.textContent.startsWith("Checking failed")),
    before,
    { timeout: 120_000 },
  );
  const error = page.locator(".toast-error", { hasText: "Checking failed" });
  if ((await error.count()) > 0) throw new Error(await error.first().innerText());
}

/** After a check: `passed` is there, or the failing checks say why not. */
async function expectStep(passed, what) {
  if (await passed.isVisible()) return;
  const failed = await page.locator(".lab-panel .check.failed").allInnerTexts();
  throw new Error(`expected ${what}; the checks said:\n${failed.join("\n") || "(nothing)"}`);
}

await step("log-in", async () => {
  await page.goto(url);
  await page.locator("input[name=token]").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("button", { name: "New session" }).waitFor();
});

await step("create-session", async () => {
  await page.getByRole("button", { name: "New session" }).click();
  await page.waitForURL(/#\/s\/[a-z0-9]+/);
  await page.locator(".workspace-bar .badge", { hasText: "running" }).waitFor();
  await waitForTerminalLine((l) => /[$#] ?$/.test(l), "a shell prompt");
});

await step("terminal-echo", async () => {
  await typeInTerminal("echo hello-berth\n");
  await waitForTerminalLine((l) => l === "hello-berth", "the output line hello-berth");
});

await step("editor-save-and-run", async () => {
  await page.getByRole("button", { name: "+ File" }).click();
  // Typed slowly, across the workspace's once-a-second re-render: what was typed stays.
  await page.locator(".name-input").pressSequentially("hello.py", { delay: 200 });
  await page.locator(".name-input").press("Enter");
  await page.locator(".editor .tab.active", { hasText: "hello.py" }).waitFor();
  await page.locator(".cm-content").click();
  // insertText, not typing: the editor closes brackets and quotes as one types.
  await page.keyboard.insertText('print("hello from " + "python")\n');
  await page.locator(".editor .tab.active .dirty").waitFor();
  await page.keyboard.press("Control+s");
  await page.locator(".toast", { hasText: "Saved hello.py" }).waitFor();
  await page.locator(".editor .tab.active .dirty").waitFor({ state: "detached" });
  await page.locator('.tree-row[data-path="/home/user/hello.py"]').waitFor();
  await typeInTerminal("python3 hello.py\n");
  await waitForTerminalLine((l) => l === "hello from python", "the script's output");
});

await step("timeline", async () => {
  // What was typed in the terminal shows in the session's timeline once it is read again,
  // beside the file the editor wrote; a command that failed is marked.
  await typeInTerminal("echo timeline-$((6*7))\n");
  await waitForTerminalLine((l) => l === "timeline-42", "the output line timeline-42");
  await typeInTerminal("ls /no-such-dir\n");
  await waitForTerminalLine((l) => l.includes("/no-such-dir") && /No such file/i.test(l), "ls's complaint");
  await page.locator(".workspace-bar").getByRole("button", { name: "Timeline" }).click();
  const panel = page.locator(".timeline-panel");
  await panel.locator(".timeline-read").waitFor();
  const echoed = panel.locator('.timeline-entry[data-kind="command"]', { hasText: "echo timeline-$((6*7))" });
  const failed = panel.locator('.timeline-entry.failed[data-kind="command"]', { hasText: "ls /no-such-dir" });
  // Refreshed by hand (it was read as it opened): the shell reports a line as its next prompt
  // shows, so read again until both are in.
  const refresh = panel.getByRole("button", { name: "Refresh", exact: true });
  const deadline = Date.now() + 15_000;
  do {
    if (Date.now() > deadline) {
      const entries = await panel.locator(".timeline-entry").allInnerTexts();
      throw new Error(`the timeline never told of both commands; it shows:\n${entries.join("\n")}`);
    }
    await refresh.click();
    // "Refreshing…" while it reads.
    await refresh.waitFor();
  } while (!((await echoed.count()) && (await failed.count())));
  await failed.locator(".timeline-failed").waitFor();
  // Made, then saved: maybe more than one entry.
  const file = panel.locator('.timeline-entry[data-kind="file_written"]', { hasText: "hello.py" }).first();
  await file.waitFor();
  // The filter shows one group at a time.
  await panel.getByRole("button", { name: /^Commands/ }).click();
  await file.waitFor({ state: "detached" });
  await echoed.waitFor();
  await panel.getByRole("button", { name: /^All/ }).click();
  await file.waitFor();
  await shotDuringStep("timeline-panel");
  await page.locator(".workspace-bar").getByRole("button", { name: "Timeline" }).click();
  await panel.waitFor({ state: "detached" });
});

await step("preview-http-server", async () => {
  await typeInTerminal("python3 -m http.server 8000\n");
  await page.locator(".preview .chip", { hasText: ":8000" }).waitFor();
  const frame = page.frameLocator(".preview-frame");
  await frame.getByText("Directory listing for /").waitFor();
  await frame.getByRole("link", { name: "hello.py" }).waitFor();
});

await step("upload-file", async () => {
  await page.locator("input[data-testid=upload-input]").setInputFiles({
    name: "notes.txt",
    mimeType: "text/plain",
    buffer: Buffer.from("uploaded through the browser\n"),
  });
  await page.locator(".toast", { hasText: "Uploaded notes.txt" }).waitFor();
  await page.locator('.tree-row[data-path="/home/user/notes.txt"]').waitFor();
  // And by drag and drop onto the tree, as a file from the desktop arrives.
  const dropped = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["dropped on the tree\n"], "dropped.txt", { type: "text/plain" }));
    return transfer;
  });
  await page.dispatchEvent(".file-tree", "dragover", { dataTransfer: dropped });
  await page.dispatchEvent(".file-tree", "drop", { dataTransfer: dropped });
  await page.locator('.tree-row[data-path="/home/user/dropped.txt"]').waitFor();
});

await step("reload-keeps-scrollback", async () => {
  await page.reload();
  await page.locator(".workspace-bar .badge", { hasText: "running" }).waitFor();
  await waitForTerminalLine((l) => l === "hello-berth", "hello-berth from before the reload");
  await waitForTerminalLine((l) => l.includes("Serving HTTP on"), "the server's banner from before the reload");
});

await step("hibernate-and-wake", async () => {
  const id = new URL(page.url()).hash.replace("#/s/", "");
  await page.goto(new URL("#/", page.url()).toString());
  const row = page.locator(`tr[data-session="${id}"]`);
  await row.getByRole("button", { name: "Hibernate" }).click();
  await row.locator(".badge", { hasText: "hibernated" }).waitFor({ timeout: 30000 });
  // Opening it is an access like any other: it wakes, and the terminal comes back.
  await row.getByRole("link", { name: "Open" }).click();
  await waitForTerminalLine((l) => l.includes("session restored"), "the restored terminal's notice");
  await waitForTerminalLine((l) => l === "hello-berth", "hello-berth from before the hibernation");
  await page.locator(".workspace-bar .badge", { hasText: "running" }).waitFor();
});

await step("snapshot-and-fork", async () => {
  page.once("dialog", (dialog) => dialog.accept("e2e snapshot"));
  await page.getByRole("button", { name: "Snapshots" }).click();
  await page.getByRole("button", { name: "Take a snapshot" }).click();
  await page.locator(".toast", { hasText: 'Snapshot "e2e snapshot" taken' }).waitFor();
  // Listed with what it costs on disk.
  await page.locator(".snapshots-panel li", { hasText: /e2e snapshot.* MB/ }).waitFor();
  const before = page.url();
  await page.locator(".snapshots-panel li", { hasText: "e2e snapshot" }).getByRole("button", { name: "Fork" }).click();
  await page.waitForURL((url) => url.toString() !== before);
  await page.locator('.tree-row[data-path="/home/user/hello.py"]').waitFor();
});

await step("docker-build-run-preview", async () => {
  // A `docker` session: write a Dockerfile in the editor, build and run it with -p in the
  // terminal, and see the container's page in the preview, as a learner of seed 004 does.
  await page.goto(new URL("#/", page.url()).toString());
  await page.getByLabel("Template").selectOption("docker");
  await page.getByRole("button", { name: "New session" }).click();
  await page.waitForURL(/#\/s\/[a-z0-9]+/);
  await page.locator(".workspace-bar .badge", { hasText: "running" }).waitFor({ timeout: 30000 });
  await waitForTerminalLine((l) => /[$#] ?$/.test(l), "a shell prompt");
  await page.getByRole("button", { name: "+ File" }).click();
  await page.locator(".name-input").pressSequentially("Dockerfile", { delay: 100 });
  await page.locator(".name-input").press("Enter");
  await page.locator(".editor .tab.active", { hasText: "Dockerfile" }).waitFor();
  await page.locator(".cm-content").click();
  await page.keyboard.insertText(
    "FROM berth/busybox\n" +
      "RUN mkdir -p /www && echo hello-from-a-container > /www/index.html\n" +
      'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n',
  );
  await page.keyboard.press("Control+s");
  await page.locator(".toast", { hasText: "Saved Dockerfile" }).waitFor();
  await typeInTerminal("docker build -q -t web . && docker run -d -p 8080:80 web\n");
  await page.locator(".preview .chip", { hasText: ":8080" }).waitFor({ timeout: 60000 });
  const frame = page.frameLocator(".preview-frame");
  await frame.getByText("hello-from-a-container").waitFor({ timeout: 30000 });
});

await step("lab-dockerfile-basics", async () => {
  // A lab as a learner does it: from the catalogue into its workspace, a failing check, the
  // Dockerfile written in the editor, a hint, the .dockerignore written in the terminal, done.
  // The steps before left three sessions, e2e-user's quota: make room for the lab's.
  await page.goto(new URL("#/", page.url()).toString());
  const rows = page.locator("tr[data-session]");
  await rows.first().or(page.getByText("No sessions yet")).waitFor();
  while ((await rows.count()) > 0) {
    const id = await rows.first().getAttribute("data-session");
    page.once("dialog", (dialog) => dialog.accept());
    await rows.first().getByRole("button", { name: "Delete" }).click();
    await page.locator(`tr[data-session="${id}"]`).waitFor({ state: "detached", timeout: 30000 });
  }

  await page.getByRole("link", { name: "Labs", exact: true }).click();
  const card = page.locator('.lab-card[data-lab="dockerfile-basics"]');
  await card.locator(".lab-status").waitFor();
  await card.locator("a.button").click();
  await page.waitForURL(/#\/labs\/dockerfile-basics/);
  const panel = page.locator(".lab-panel");
  const start = page.getByRole("button", { name: "Start lab" });
  await start.or(panel).waitFor();
  if (await start.isVisible()) {
    await start.click();
  } else {
    // An attempt an earlier run left open: start it over.
    page.once("dialog", (dialog) => dialog.accept());
    await panel.getByRole("button", { name: "Reset ▾" }).click();
    await panel.getByRole("button", { name: "Restart the lab" }).click();
    await page.locator(".toast", { hasText: "The lab starts over" }).waitFor({ timeout: 60000 });
  }
  await panel.locator(".lab-progress", { hasText: /Step 1 of \d/ }).waitFor({ timeout: 60000 });
  await page.locator(".workspace-bar .badge", { hasText: "running" }).waitFor({ timeout: 30000 });
  await waitForTerminalLine((l) => /[$#] ?$/.test(l), "a shell prompt");
  // The lab's files are in the home folder, where the editor's new file goes.
  await page.locator('.tree-row[data-path="/home/user/app.py"]').waitFor();

  await checkLab();
  const failed = await panel.locator(".check.failed").allInnerTexts();
  if (failed.length === 0 || !failed[0].includes("✗")) throw new Error("step 1 passed without a Dockerfile");

  await page.getByRole("button", { name: "+ File" }).click();
  await page.locator(".name-input").pressSequentially("Dockerfile", { delay: 100 });
  await page.locator(".name-input").press("Enter");
  await page.locator(".editor .tab.active", { hasText: "Dockerfile" }).waitFor();
  await page.locator(".cm-content").click();
  await page.keyboard.insertText(
    "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nEXPOSE 8000\n" + 'CMD ["python", "app.py"]\n',
  );
  await page.keyboard.press("Control+s");
  await page.locator(".toast", { hasText: "Saved Dockerfile" }).waitFor();
  await checkLab();
  await expectStep(panel.locator(".lab-passed", { hasText: "Step 1 passed" }), "step 1 to pass");
  await panel.locator(".lab-progress", { hasText: /Step 2 of \d/ }).waitFor();

  // A question goes to the assistant (a stand-in here), which sees the learner's own files.
  const hints = panel.locator(".lab-hint");
  const before = await hints.count();
  await panel.locator(".lab-question").fill("Why would .env end up in my image?");
  await panel.getByRole("button", { name: "Get a hint" }).click();
  const hint = hints.nth(before).locator(".lab-hint-text");
  await hint.or(page.locator(".toast-error")).first().waitFor({ timeout: 60000 });
  const said = (await hint.isVisible()) ? await hint.innerText() : "";
  if (!said.includes("COPY . .")) {
    throw new Error(`no hint about this Dockerfile came: ${said} ${await page.locator(".toast-error").allInnerTexts()}`);
  }

  await typeInTerminal("printf '.env\\n.git\\n__pycache__\\nvenv\\n' > .dockerignore && echo ignore-written\n");
  await waitForTerminalLine((l) => l === "ignore-written", "that .dockerignore was written");
  await checkLab();
  await expectStep(panel.locator(".lab-complete", { hasText: "Lab complete" }), "the lab to be complete");
});

await step("class-live-and-shadow", async () => {
  // e2e-user is an instructor: a class of one learner, a lab started for it, the learner's
  // step followed live, and the learner's terminal watched read-only while they type in it
  // (the learner in a browser context of their own).
  if (!learnerToken) throw new Error("set BERTH_LEARNER_TOKEN (a second user's token)");
  await page.getByRole("link", { name: "Classes", exact: true }).click();
  await page.waitForURL(/#\/classes$/);
  const form = page.locator("form.class-form");
  await form.getByLabel("Name").fill("E2E class");
  await form.getByLabel("Members").fill("e2e-learner");
  await form.getByRole("button", { name: "Create class" }).click();
  const row = page.locator("tr[data-class]", { hasText: "E2E class" });
  await row.getByRole("link", { name: "Open" }).click();
  await page.locator(".class-head[data-class]").waitFor();
  await page.locator('select[aria-label="Lab"]').selectOption("dockerfile-basics");
  await page.getByRole("button", { name: "Start for the class" }).click();
  await page.locator('.class-start-results li[data-member="e2e-learner"].started').waitFor({ timeout: 60000 });
  const learner = page.locator('tr[data-learner="e2e-learner"]');
  await learner.locator(".learner-progress", { hasText: "Step 1 of 2" }).waitFor({ timeout: 15000 });

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const other = await context.newPage();
  other.setDefaultTimeout(20_000);
  await other.goto(url);
  await other.locator("input[name=token]").fill(learnerToken);
  await other.getByRole("button", { name: "Log in" }).click();
  await other.goto(new URL("#/labs/dockerfile-basics", url).toString());
  await other.locator(".lab-panel").waitFor({ timeout: 60000 });
  await other.locator(".terminal:not(.hidden) .xterm-rows", { hasText: "$" }).waitFor();
  await other.locator(".terminal:not(.hidden) .xterm").click();
  await other.keyboard.type("echo learner-typed-$((20+22))\n");
  await other.locator(".terminal:not(.hidden) .xterm-rows", { hasText: "learner-typed-42" }).waitFor();

  // The learner's Check shows in the class view without a reload.
  await other.locator(".lab-panel").getByRole("button", { name: "Check", exact: true }).click();
  await learner.locator(".learner-checks", { hasText: "✗" }).waitFor({ timeout: 60000 });

  await learner.getByRole("button", { name: "Watch terminal" }).click();
  const shadow = page.locator('.shadow-terminal[data-learner="e2e-learner"]');
  await shadow.locator(".readonly-banner", { hasText: "Read-only: you are watching e2e-learner's terminal" }).waitFor();
  const picker = shadow.locator(".shadow-picker button[data-terminal]");
  if (await picker.count()) await picker.first().click();
  await shadow.locator(".xterm-rows", { hasText: "learner-typed-42" }).waitFor();
  await other.locator(".terminal:not(.hidden) .xterm").click();
  await other.keyboard.type("echo still-typing-$((6*7))\n");
  await shadow.locator(".xterm-rows", { hasText: "still-typing-42" }).waitFor();
  // Keys pressed in the watched terminal go nowhere.
  await shadow.locator(".xterm").click();
  await page.keyboard.type("echo watcher-typed\n");
  await page.waitForTimeout(1000);
  const learnerSees = await other.locator(".terminal:not(.hidden) .xterm-rows").innerText();
  if (learnerSees.includes("watcher-typed")) throw new Error("the watcher's keys reached the learner");

  // The instructor restarts the learner's lab; the learner's page follows on its own.
  await shadow.getByRole("button", { name: "Stop watching" }).click();
  page.once("dialog", (dialog) => dialog.accept());
  await learner.getByRole("button", { name: "Reset ▾" }).click();
  await learner.getByRole("button", { name: "Restart the lab" }).click();
  await other.locator(".toast", { hasText: "Your lab was reset" }).waitFor({ timeout: 30000 });
  await other.locator(".lab-progress", { hasText: "Step 1 of 2" }).waitFor();
  await context.close();
});

if (adminToken) {
  // The admin, in a browser context of their own: e2e-user stays logged in on `page`.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const admin = await context.newPage();
  admin.setDefaultTimeout(20_000);
  admin.on("pageerror", (e) => consoleLines.push(`[admin pageerror] ${e.message}`));
  await step("admin-page", async () => {
    screen = admin;
    await admin.goto(url);
    await admin.locator("input[name=token]").fill(adminToken);
    await admin.getByRole("button", { name: "Log in" }).click();
    await admin.getByRole("link", { name: "Admin", exact: true }).click();
    await admin.waitForURL(/#\/admin$/);
    const users = admin.locator(".admin-users");
    await users.locator('tr[data-user="e2e-user"]').waitFor();
    await admin.locator(".capacity .capacity-words", { hasText: /^\d+ of \d+ live sessions? / }).waitFor();
    await admin.locator(".admin-sessions tr[data-session]", { hasText: "e2e-user" }).first().waitFor();

    // A throwaway user: made here (its token shown once), disabled, enabled again, deleted.
    const name = `e2e-throwaway-${Date.now().toString(36)}`;
    await users.locator("input[name=user-name]").fill(name);
    await users.getByRole("button", { name: "Create user" }).click();
    await users.locator(`.token-once[data-user="${name}"] .token`).waitFor();
    const row = users.locator(`tr[data-user="${name}"]`);
    admin.once("dialog", (dialog) => dialog.accept());
    await row.getByRole("button", { name: "Disable" }).click();
    await row.locator(".user-status", { hasText: "Disabled" }).waitFor();
    await row.getByRole("button", { name: "Enable" }).click();
    await row.locator(".user-status", { hasText: "Active" }).waitFor();
    admin.once("dialog", (dialog) => dialog.accept());
    await row.getByRole("button", { name: "Delete" }).click();
    await row.waitFor({ state: "detached" });
    await users.getByRole("button", { name: "Done" }).click();
    // The screenshot shows the capacity and the users.
    await admin.locator(".capacity").scrollIntoViewIfNeeded();
  });
  await context.close();
} else {
  console.log("skip admin-page: set BERTH_ADMIN_TOKEN (the admin token) to try the admin's page");
}

await browser.close();
console.log(`all steps passed; screenshots in ${shots}`);
