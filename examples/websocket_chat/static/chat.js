// The chat page's script. Model text only ever reaches the page through textContent, so a
// reply containing <script> or <img onerror=...> is shown as the characters it is.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("form");
const input = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const statusLine = document.getElementById("status");
let bubble = null; // the assistant message being streamed, if any

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
function addToolNote(text) {
  if (bubble === null) return;
  const div = document.createElement("div");
  div.className = "note tool";
  div.textContent = text;
  bubble.before(div);
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

function finish(state, note, kind) {
  if (bubble === null) return;
  bubble.dataset.state = state;
  if (note) addNote(bubble, note, kind);
  bubble = null;
  setBusy(false);
  input.focus();
}

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(`${scheme}//${location.host}/ws`);
setBusy(true);
statusLine.textContent = "Connecting...";

socket.addEventListener("message", (event) => {
  const message = JSON.parse(event.data);
  switch (message.type) {
    case "history": // what this session has stored: completed turns only
      for (const { role, text } of message.messages) {
        addMessage(role, text).dataset.state = "done";
      }
      statusLine.textContent = `${message.turns} turn(s) stored.`;
      setBusy(false);
      stopButton.disabled = true;
      document.body.dataset.ready = "true";
      break;
    case "delta":
      if (bubble !== null) bubble.textContent += message.text; // text, never HTML
      break;
    case "tool":
      addToolNote(`Calling ${message.name}(${JSON.stringify(message.input)})`);
      break;
    case "tool_result":
      addToolNote(`${message.name}: ${message.status}`);
      break;
    case "retrying":
      statusLine.textContent = `Retrying (attempt ${message.attempt}): ${message.why}`;
      break;
    case "done":
      statusLine.textContent =
        `Done: ${message.usage.total_tokens} tokens. ${message.turns} turn(s) stored.`;
      finish("done");
      break;
    case "stopped":
      statusLine.textContent = `Stopped. ${message.turns} turn(s) stored.`;
      finish("stopped", "Stopped: this reply was not stored.", "stopped");
      break;
    case "error":
      statusLine.textContent = "The reply failed.";
      finish("error", `Error: ${message.message} (this reply was not stored)`, "error");
      break;
  }
});

socket.addEventListener("close", () => {
  finish("error", "Disconnected from the server.", "error");
  statusLine.textContent = "Disconnected: reload the page to reconnect.";
  sendButton.disabled = true;
  stopButton.disabled = true;
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = input.value.trim();
  if (!prompt || bubble !== null || socket.readyState !== WebSocket.OPEN) return;
  input.value = "";
  addMessage("user", prompt);
  bubble = addMessage("assistant", "");
  bubble.dataset.state = "streaming";
  setBusy(true);
  statusLine.textContent = "Streaming...";
  socket.send(JSON.stringify({ type: "prompt", text: prompt }));
});

// Stop: the server cancels the turn's task, which closes the Bedrock connection.
stopButton.addEventListener("click", () => {
  if (bubble !== null) socket.send(JSON.stringify({ type: "stop" }));
});
