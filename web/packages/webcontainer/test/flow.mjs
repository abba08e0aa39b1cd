// The getting-started flow, shared by the Node run and the browser page: it takes the
// WebContainer class (ours, or `@webcontainer/api` aliased to ours) and reports each step.

const files = {
  "package.json": {
    file: {
      contents: JSON.stringify({ name: "example-app", type: "module", scripts: { start: "node index.js" } }, null, 2),
    },
  },
  "index.js": {
    file: {
      contents: `import http from "node:http";
http.createServer((req, res) => res.end("Welcome to a WebContainer app! 🥳")).listen(3111);
`,
    },
  },
};

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function collect(process) {
  let text = "";
  await process.output.pipeTo(new WritableStream({ write: (chunk) => void (text += chunk) }));
  return text;
}

export async function gettingStarted(WebContainer, report) {
  const steps = [];
  const step = (name) => {
    steps.push(name);
    report(`ok ${name}`);
  };
  const container = await WebContainer.boot();
  try {
    step("boot");
    await container.mount(files);
    check((await container.fs.readFile("/package.json", "utf-8")).includes("example-app"), "package.json not mounted");
    step("mount");

    const install = await container.spawn("npm", ["install"]);
    const installed = collect(install);
    const installExit = await within(120000, install.exit, "npm install");
    check(installExit === 0, `npm install exited ${installExit}: ${await installed}`);
    step("npm install");

    const ready = new Promise((resolve) => container.on("server-ready", (port, url) => resolve({ port, url })));
    const server = await container.spawn("npm", ["run", "start"]);
    const { port, url } = await within(60000, ready, "server-ready");
    check(port === 3111, `server-ready for port ${port}`);
    const page = await (await fetch(url)).text();
    check(page.includes("Welcome to a WebContainer app!"), `the page at ${url}: ${page}`);
    step("server-ready");

    const seen = new Promise((resolve) => {
      const watcher = container.fs.watch("/", { recursive: true }, (event, filename) => {
        if (filename === "index.js") {
          watcher.close();
          resolve(event);
        }
      });
    });
    // The watch opens a WebSocket; writes before it is open are not seen by it.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const edited = files["index.js"].file.contents.replace("Welcome", "Welcome back");
    await container.fs.writeFile("/index.js", edited);
    const event = await within(10000, seen, "the watch event for index.js");
    check(event === "change" || event === "rename", `watch event ${event}`);
    step("fs.watch");

    const tree = await container.export("/", { excludes: ["node_modules"] });
    check(tree["index.js"]?.file?.contents === edited, "export lacks the edited index.js");
    await container.mount(tree, { mountPoint: "copy" });
    const copied = await container.export("copy");
    check(JSON.stringify(copied) === JSON.stringify(tree), "the exported tree did not round-trip through mount");
    step("export");

    server.kill();
    const code = await within(15000, server.exit, "the server's exit after kill()");
    check(typeof code === "number" && code !== 0, `exit after kill: ${code}`);
    step("kill");
  } finally {
    container.teardown();
  }
  return steps;
}
