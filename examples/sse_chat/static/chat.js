// The chat page's script. Model text only ever reaches the page through textContent, so a
// reply containing <script> or <img onerror=...> is shown as the characters it is.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("form");
const input = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const statusLine = document.getElementById("status");
let controller = null; // the AbortController of the turn in flight, if any

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  log.append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function addNote(after, text, kind) {
  const div = document.createElement("div");
  div.className = `note ${kind}`;
  div.textContent = text;
  after.after(div);
}

// A tool call of the turn, shown above the reply it leads to.
function addToolNote(bubble, text) {
  const div = document.createElement("div");
  div.className = "note tool";
  div.textContent = text;
  bubble.before(div);
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

// Server-Sent Events read from a fetch() body: {event, data} for each "event:/data:" block.
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function send(prompt) {
  addMessage("user", prompt);
  const bubble = addMessage("assistant", "");
  bubble.dataset.state = "streaming";
  controller = new AbortController();
  setBusy(true);
  statusLine.textContent = "Streaming...";
  try {
    const response = await fetch("chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    for await (const { event, data } of readEvents(response)) {
      if (event === "delta") {
        bubble.textContent += data.text; // text, never HTML
      } else if (event === "tool") {
        addToolNote(bubble, `Calling ${data.name}(${JSON.stringify(data.input)})`);
      } else if (event === "tool_result") {
        addToolNote(bubble, `${data.name}: ${data.status}`);
      } else if (event === "retrying") {
        statusLine.textContent = `Retrying (attempt ${data.attempt}): ${data.why}`;
      } else if (event === "done") {
        bubble.dataset.state = "done";
        statusLine.textContent =
          `Done: ${data.usage.total_tokens} tokens. ${data.turns} turn(s) stored.`;
      } else if (event === "error") {
        bubble.dataset.state = "error";
        addNote(bubble, `Error: ${data.message} (this reply was not stored)`, "error");
        statusLine.textContent = "The reply failed.";
      }
    }
    if (bubble.dataset.state === "streaming") throw new Error("the connection closed early");
  } catch (err) {
    if (err.name === "AbortError") {
      bubble.dataset.state = "stopped";
      addNote(bubble, "Stopped: this reply was not stored.", "stopped");
      statusLine.textContent = "Stopped.";
    } else {
      bubble.dataset.state = "error";
      addNote(bubble, `Error: ${err.message}`, "error");
      statusLine.textContent = "The reply failed.";
    }
  } finally {
    controller = null;
    setBusy(false);
    input.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = input.value.trim();
  if (!prompt || controller) return;
  input.value = "";
  send(prompt);
});

// Stop: abort the fetch; the browser drops the connection and the server cancels the turn.
stopButton.addEventListener("click", () => controller?.abort());

// What this session has stored: completed turns only.
fetch("history")
  .then((response) => response.json())
  .then(({ messages, turns }) => {
    for (const { role, text } of messages) addMessage(role, text).dataset.state = "done";
    statusLine.textContent = `${turns} turn(s) stored.`;
    document.body.dataset.ready = "true";
  });
