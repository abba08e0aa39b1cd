// A stand-in for the labs assistant's provider (an OpenAI-compatible chat-completions
// endpoint), for the browser test: no paid service is called. It answers from what Berth sent
// it, quoting the learner's own Dockerfile, so the test sees a hint grounded in their files.
//
//   node e2e/assistant.mjs PORT
import { createServer } from "node:http";

const port = Number(process.argv[2] ?? 18099);

/** The learner's Dockerfile as Berth fenced it in the prompt, if it did. */
function learnerDockerfile(prompt) {
  const match = prompt.match(/<learner-data source="Dockerfile">\n([\s\S]*?)\n<\/learner-data>/);
  return match ? match[1] : null;
}

createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => (body += chunk));
  request.on("end", () => {
    if (request.method !== "POST" || request.url !== "/v1/chat/completions") {
      response.writeHead(404).end();
      return;
    }
    const prompt = JSON.parse(body).messages.map((m) => m.content).join("\n");
    const dockerfile = learnerDockerfile(prompt);
    const copy = dockerfile?.split("\n").find((line) => /^COPY\b/i.test(line.trim()));
    const content = copy
      ? `Your Dockerfile's \`${copy.trim()}\` sends everything in this folder into the image, .env included. List what must stay out in .dockerignore.`
      : "I cannot see a Dockerfile in your folder yet: start with FROM python:3.11-slim.";
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ choices: [{ message: { role: "assistant", content } }] }));
  });
}).listen(port, "127.0.0.1", () => console.log(`assistant stand-in on ${port}`));
