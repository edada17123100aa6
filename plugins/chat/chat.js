// loom chat in the browser: one WebSocket to /ws beside this page; each
// text message from the server is one line of the room, shown as text
// (textContent: nothing the room says is ever parsed as HTML); each line
// typed is one message. The server asks for a nickname first, as it asks
// a line client (plugins/chat.lua, docs/chat.md).
"use strict";

(function () {
  // The server's limit on one message (a longer one closes with 1009).
  const MAX_BYTES = 16384;
  // Lines kept on the page; older ones are removed.
  const MAX_SHOWN = 2000;
  const CLOSE_REASONS = {
    1000: "closed",
    1001: "the server went away or the connection was idle",
    1006: "the connection was lost",
    1008: "refused by the server",
    1009: "a message was too long",
  };

  const log = document.getElementById("log");
  const form = document.getElementById("say");
  const input = document.getElementById("line");
  const send = document.getElementById("send");
  const statusText = document.getElementById("status");
  const reconnect = document.getElementById("reconnect");
  const encoder = new TextEncoder();
  let socket = null;

  function kindOf(text) {
    if (text.startsWith("* ")) {
      return "notice";
    }
    if (text.startsWith("<")) {
      return "said";
    }
    return "server";
  }

  function show(text, kind) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    log.appendChild(item);
    while (log.childElementCount > MAX_SHOWN) {
      log.firstElementChild.remove();
    }
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  }

  function setStatus(text, up) {
    statusText.textContent = text;
    statusText.className = "status " + (up ? "up" : "down");
    input.disabled = !up;
    send.disabled = !up;
    reconnect.hidden = up || socket === null || socket.readyState !== WebSocket.CLOSED;
    if (up) {
      input.focus();
    }
  }

  function socketURL() {
    const url = new URL("ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  function connect() {
    socket = new WebSocket(socketURL());
    setStatus("connecting…", false);
    socket.addEventListener("open", function () {
      setStatus("connected", true);
    });
    socket.addEventListener("message", function (event) {
      if (typeof event.data === "string") {
        show(event.data, kindOf(event.data));
      }
    });
    socket.addEventListener("close", function (event) {
      const why = CLOSE_REASONS[event.code] || "closed";
      show("* disconnected: " + why + " (" + event.code
        + (event.reason ? " " + event.reason : "") + ")", "notice");
      setStatus("disconnected", false);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value;
    if (text === "" || socket === null || socket.readyState !== WebSocket.OPEN) {
      return;
    }
    if (encoder.encode(text).length > MAX_BYTES) {
      show("* not sent: lines are at most " + MAX_BYTES + " bytes", "notice");
      return;
    }
    socket.send(text);
    show("> " + text, "mine");
    input.value = "";
  });

  reconnect.addEventListener("click", function () {
    connect();
  });

  connect();
})();
