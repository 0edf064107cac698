// The sandpool browser page: one WebSocket to one session of one pool.
// The API key goes in the subprotocol ("bearer.<key>"), since browsers
// cannot set an Authorization header on a WebSocket.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const session = "browser-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
  $("session").value = session;
  const params = new URLSearchParams(location.search);
  if (params.get("pool")) $("pool").value = params.get("pool");
  let ws = null;
  let running = null;
  const cells = new Map();

  function setState(text) { $("state").textContent = text; }

  function cellFor(id) {
    let c = cells.get(id);
    if (!c) {
      c = document.createElement("div");
      c.className = "cell";
      c.dataset.id = id;
      $("output").prepend(c);
      cells.set(id, c);
    }
    return c;
  }

  // append adds text to the cell's last block of the same kind, so
  // streamed chunks read as one output.
  function append(id, kind, text) {
    const c = cellFor(id);
    let last = c.lastElementChild;
    if (!last || last.tagName !== "PRE" || last.className !== kind) {
      last = document.createElement("pre");
      last.className = kind;
      c.appendChild(last);
    }
    last.textContent += text;
  }

  function bundle(id, data, kind) {
    if (data["image/png"]) {
      const img = document.createElement("img");
      img.alt = "figure";
      img.src = "data:image/png;base64," + data["image/png"];
      cellFor(id).appendChild(img);
    } else if (data["text/plain"]) {
      append(id, kind, data["text/plain"] + "\n");
    }
  }

  function onMessage(ev) {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    switch (m.type) {
      case "queued": append(m.id, "status", "queued\n"); break;
      case "started": running = m.id; $("interrupt-btn").disabled = false; break;
      case "stdout": append(m.id, "stdout", m.text); break;
      case "stderr": append(m.id, "stderr", m.text); break;
      case "display": bundle(m.id, m.data || {}, "display"); break;
      case "result": bundle(m.id, m.data || {}, "result"); break;
      case "error": append(m.id, "error", (m.traceback || [m.ename + ": " + m.evalue]).join("\n") + "\n"); break;
      case "done":
        append(m.id, "status", "done: " + m.status + " in " + m.durationMs + " ms" + (m.reason ? " (" + m.reason + ")" : "") + "\n");
        cellFor(m.id).dataset.status = m.status;
        if (running === m.id) { running = null; $("interrupt-btn").disabled = true; }
        break;
      case "failure":
        append(m.id || "connection", "error", m.code + ": " + m.message + "\n");
        if (m.id) cellFor(m.id).dataset.status = "failure";
        break;
    }
  }

  $("connect").addEventListener("submit", (e) => {
    e.preventDefault();
    if (ws) ws.close();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = scheme + "//" + location.host + "/pools/" + encodeURIComponent($("pool").value) + "/ws?identifier=" + encodeURIComponent(session);
    const protocols = ["sandpool.v1"];
    if ($("token").value) protocols.push("bearer." + $("token").value);
    setState("connecting");
    ws = new WebSocket(url, protocols);
    ws.onopen = () => { setState("connected"); $("run-btn").disabled = false; };
    ws.onclose = (e) => { setState("disconnected" + (e.code !== 1000 ? " (" + e.code + ")" : "")); $("run-btn").disabled = true; $("interrupt-btn").disabled = true; ws = null; };
    ws.onmessage = onMessage;
  });

  let n = 0;
  function run() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    n++;
    const id = "cell-" + String(n).padStart(4, "0") + "-" + session.slice(-6);
    const c = cellFor(id);
    const src = document.createElement("pre");
    src.className = "source";
    src.textContent = $("code").value;
    c.appendChild(src);
    ws.send(JSON.stringify({ type: "execute", id: id, code: $("code").value }));
  }
  $("run").addEventListener("submit", (e) => { e.preventDefault(); run(); });
  $("code").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); } });
  $("interrupt-btn").addEventListener("click", () => { if (ws && running) ws.send(JSON.stringify({ type: "interrupt", id: running })); });
  $("clear-btn").addEventListener("click", () => { $("output").textContent = ""; cells.clear(); });
})();
